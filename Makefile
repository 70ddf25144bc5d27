# squeeze: the two commands a fresh machine needs are `make demo` and `make test`.
GO      ?= go
FUZZTIME ?= 10s
BIN     := bin/squeeze
MODEL   := testdata/stories260K/stories260K.bin
TEXT    := testdata/tinystories/dev.txt

.PHONY: build demo test vet fuzz bench clean test-arm64

build:
	$(GO) build -o $(BIN) ./cmd/squeeze

CALIB   := testdata/tinystories/calib.txt
BUNDLE  := bin/stories260K-3.7bpw.sqz

# The main job on the bundled example model: compile it to 3.7 bits per weight with
# calibration, run the bundle, and measure it against the original on held-out text
# through the CI gate (thresholds set for this plain compile: KLD 0.165, PPL ratio 1.17;
# compile --qat gets 0.069, 1.07, docs/QUALITY.md).
demo: build
	$(BIN) eval $(MODEL) --text $(TEXT) --ctx 256
	$(BIN) compile $(MODEL) --target 3.7bpw --calib $(CALIB) -o $(BUNDLE)
	$(BIN) run $(BUNDLE) --prompt "Once upon a time" -n 64 --temp 0
	$(BIN) gate --original $(MODEL) --compressed $(BUNDLE) --text $(TEXT) --ctx 256 --max-kld 0.2 --max-ppl-ratio 1.2

# Everything CI checks: vet, all tests, and a short run of every fuzz target.
test: vet
	$(GO) test -count=1 ./...
	$(MAKE) test-arm64
	$(MAKE) fuzz

# The arm64 build of the kernels and the runtime (NEON for the float, f16, lut2/3/4 row kernels; the rest pure Go), cross-compiled
# and run under qemu-user (Debian's qemu-user-static; .ci/run installs it when missing).
QEMU_ARM64 ?= $(shell command -v qemu-aarch64-static || command -v qemu-aarch64)
test-arm64:
	@if [ -z "$(QEMU_ARM64)" ]; then echo "test-arm64: no qemu-aarch64(-static) on PATH; install qemu-user-static to run it" >&2; exit 1; fi
	GOARCH=arm64 $(GO) vet ./...
	@set -e; for pkg in runtime/kernels runtime ir; do \
	  GOARCH=arm64 $(GO) test -c -o bin/arm64-$$(echo $$pkg | tr / -).test ./$$pkg; \
	  echo "qemu arm64: $$pkg"; \
	  (cd $$pkg && $(QEMU_ARM64) $(CURDIR)/bin/arm64-$$(echo $$pkg | tr / -).test -test.count=1); \
	done

vet:
	$(GO) vet ./...

# Each parser's fuzz target for $(FUZZTIME), seeded with real files. A crasher (a "Failing
# input written" line) fails at once; go's fuzzer sometimes ends a clean run with "context
# deadline exceeded" while it is still minimising an input, and only that is retried once.
fuzz:
	@set -e; grep -rl --include='*_test.go' '^func Fuzz' . | while read f; do \
	  pkg=./$$(dirname $$f); \
	  for fn in $$(grep -o '^func Fuzz[A-Za-z0-9_]*' $$f | sed 's/func //'); do \
	    echo "fuzz $$pkg $$fn ($(FUZZTIME))"; \
	    ok=0; for try in 1 2; do \
	      if $(GO) test $$pkg -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 2s >/tmp/squeeze-fuzz.log 2>&1; then ok=1; break; fi; \
	      grep -q 'Failing input written' /tmp/squeeze-fuzz.log && break; \
	      grep -q 'context deadline exceeded' /tmp/squeeze-fuzz.log || break; \
	      echo "  (go's fuzzer stopped on its own deadline without a failing input; running again)"; \
	    done; \
	    [ $$ok = 1 ] || { cat /tmp/squeeze-fuzz.log; exit 1; }; \
	  done; \
	done

bench:
	$(GO) test -run '^$$' -bench . -benchtime 3x ./runtime/...

clean:
	rm -rf bin
