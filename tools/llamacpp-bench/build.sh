#!/usr/bin/env bash
# Build lcpp-bench and lcpp-quantize against the prebuilt libs fetched by fetch.sh.
#   LCPP_DIR=/tmp/lcpp OUT=/tmp/lcpp ./build.sh              # lcpp-bench, lcpp-quantize (~2 s)
#   LCPP_DIR=/tmp/lcpp ./build.sh llama-bench                 # also llama.cpp's own llama-bench (~1 min)
# llama-bench is compiled from the same llama.cpp source (tools/llama-bench) and linked
# against the prebuilt libllama-common.so; it is written into the bins directory because
# ggml_backend_load_all() looks for libggml-cpu-*.so next to the executable (or in the cwd).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
LCPP_DIR=${LCPP_DIR:-/tmp/lcpp}
OUT=${OUT:-$LCPP_DIR}
BINS="$LCPP_DIR/package/bins/linux-x64"
SRC="$LCPP_DIR/llama.cpp-src"
for f in "$BINS/libllama.v0.5.0.so" "$SRC/include/llama.h"; do
    [ -f "$f" ] || { echo "build.sh: missing $f (run fetch.sh first)" >&2; exit 1; }
done
CFLAGS="-O2 -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -I$SRC/include -I$SRC/ggml/include -DLCPP_BINS_DIR=\"$BINS\""
LIBS="-L$BINS -l:libllama.v0.5.0.so -l:libggml.v0.5.0.so -l:libggml-base.so -Wl,-rpath,$BINS -lm"
gcc $CFLAGS "$HERE/bench.c" -o "$OUT/lcpp-bench" $LIBS
gcc $CFLAGS "$HERE/quantize.c" -o "$OUT/lcpp-quantize" $LIBS
echo "built $OUT/lcpp-bench $OUT/lcpp-quantize"
if [ "${1:-}" = "llama-bench" ]; then
    g++ -O2 -DNDEBUG -std=c++17 \
        -I"$SRC/common" -I"$SRC/include" -I"$SRC/ggml/include" -I"$SRC/vendor" -I"$SRC/tools/llama-bench" \
        "$SRC/tools/llama-bench/llama-bench.cpp" "$SRC/tools/llama-bench/main.cpp" -o "$BINS/llama-bench" \
        -L"$BINS" -l:libllama-common.so -l:libllama.v0.5.0.so -l:libggml.v0.5.0.so -l:libggml-base.so \
        -Wl,-rpath,"$BINS" -lpthread
    echo "built $BINS/llama-bench"
fi
