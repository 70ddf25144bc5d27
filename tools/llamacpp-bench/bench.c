// lcpp-bench: a small llama-bench equivalent (prefill + decode tokens/s)
// linked against the prebuilt llama.cpp shared libraries shipped in the npm
// package @node-llama-cpp/linux-x64 (see README.md).
//
// What it measures, per repetition (after one warm-up run, like llama-bench):
//   1. clear the KV cache
//   2. prefill: one llama_decode() of n_prompt random token ids (split in
//      n_batch-sized batches if n_prompt > n_batch, as llama-bench does),
//      then llama_synchronize()                      -> prefill tokens/s
//   3. decode: n_gen single-token llama_decode() calls, each followed by
//      llama_synchronize(), continuing after the prompt (positions
//      n_prompt .. n_prompt+n_gen-1)                -> decode tokens/s
// With --tg-depth0 the KV cache is cleared again before step 3, so decode
// runs at positions 0..n_gen-1, which is what llama-bench's separate "tgN"
// test measures.
//
// Threads: one ggml threadpool with n_threads threads (poll=50, llama-bench's
// default) is attached to the context for both prefill and decode, and
// n_threads = n_threads_batch = -t.
//
// Output: a human-readable table on stdout, and a single JSON object on the
// last line (or only JSON with -o json).
//
// Compiled against the real llama.h/ggml headers of the matching llama.cpp
// source (the git bundle inside the node-llama-cpp npm package).
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "llama.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef LCPP_BINS_DIR
#define LCPP_BINS_DIR ""
#endif

static int g_verbose = 0;
static char g_cpu_backend[2048] = "";
static char g_linebuf[4096];
static size_t g_linelen = 0;

// ggml/llama log callback: remembers which CPU backend library ggml loaded,
// prints warnings/errors always and everything else only with -v.
static void log_cb(enum ggml_log_level level, const char *text, void *ud) {
    (void)ud;
    // lines may arrive in pieces (GGML_LOG_LEVEL_CONT); accumulate to '\n'.
    size_t n = strlen(text);
    if (g_linelen + n < sizeof(g_linebuf)) {
        memcpy(g_linebuf + g_linelen, text, n);
        g_linelen += n;
        g_linebuf[g_linelen] = '\0';
    }
    if (n > 0 && text[n - 1] == '\n') {
        const char *key = "loaded CPU backend from ";
        const char *p = strstr(g_linebuf, key);
        if (p) {
            p += strlen(key);
            size_t m = strcspn(p, "\n");
            if (m >= sizeof(g_cpu_backend)) {
                m = sizeof(g_cpu_backend) - 1;
            }
            memcpy(g_cpu_backend, p, m);
            g_cpu_backend[m] = '\0';
        }
        g_linelen = 0;
    }
    if (g_verbose || level == GGML_LOG_LEVEL_ERROR || level == GGML_LOG_LEVEL_WARN || strstr(text, "CPU backend")) {
        fputs(text, stderr);
    }
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// xorshift64*: reproducible random token ids independent of libc rand().
static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static int32_t rand_token(int32_t n_vocab) {
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return (int32_t)((g_rng * 0x2545F4914F6CDD1Dull >> 33) % (uint64_t)n_vocab);
}

static int prefill(struct llama_context *ctx, int n_prompt, int n_batch, int n_vocab, llama_token *buf) {
    int done = 0;
    while (done < n_prompt) {
        int n = n_prompt - done < n_batch ? n_prompt - done : n_batch;
        for (int i = 0; i < n; i++) {
            buf[i] = rand_token(n_vocab);
        }
        int rc = llama_decode(ctx, llama_batch_get_one(buf, n));
        if (rc != 0) {
            fprintf(stderr, "lcpp-bench: llama_decode of a %d-token prompt batch failed (rc=%d)\n", n, rc);
            return -1;
        }
        done += n;
    }
    llama_synchronize(ctx);
    return 0;
}

static int generate(struct llama_context *ctx, int n_gen, int n_vocab) {
    llama_token tok = rand_token(n_vocab);
    for (int i = 0; i < n_gen; i++) {
        int rc = llama_decode(ctx, llama_batch_get_one(&tok, 1));
        if (rc != 0) {
            fprintf(stderr, "lcpp-bench: llama_decode of generated token %d failed (rc=%d)\n", i, rc);
            return -1;
        }
        llama_synchronize(ctx);
        tok = rand_token(n_vocab);
    }
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

struct stats {
    double median, mean, stddev;
};

static struct stats summarize(const double *v, int n) {
    struct stats s = {0, 0, 0};
    double *tmp = malloc(sizeof(double) * (size_t)n);
    memcpy(tmp, v, sizeof(double) * (size_t)n);
    qsort(tmp, (size_t)n, sizeof(double), cmp_double);
    s.median = n % 2 ? tmp[n / 2] : 0.5 * (tmp[n / 2 - 1] + tmp[n / 2]);
    for (int i = 0; i < n; i++) {
        s.mean += v[i];
    }
    s.mean /= n;
    if (n > 1) {
        double ss = 0;
        for (int i = 0; i < n; i++) {
            ss += (v[i] - s.mean) * (v[i] - s.mean);
        }
        s.stddev = sqrt(ss / (n - 1));
    }
    free(tmp);
    return s;
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            fprintf(f, "\\%c", c);
        } else if (c == '\n') {
            fputs("\\n", f);
        } else if (c < 0x20) {
            fprintf(f, "\\u%04x", c);
        } else {
            fputc(c, f);
        }
    }
    fputc('"', f);
}

static void json_arr(FILE *f, const double *v, int n) {
    fputc('[', f);
    for (int i = 0; i < n; i++) {
        fprintf(f, "%s%.4f", i ? "," : "", v[i]);
    }
    fputc(']', f);
}

static void usage(const char *a0) {
    fprintf(stderr,
            "usage: %s -m MODEL.gguf [-p 128] [-n 32] [-t 1] [-r 3] [-b BATCH] [--no-warmup]\n"
            "          [--tg-depth0] [--cpu-variant NAME|PATH] [--backend-dir DIR] [-o text|json] [-v]\n"
            "  -p N            prompt (prefill) tokens, one llama_decode if N <= batch (default 128)\n"
            "  -n N            generated (decode) tokens, one llama_decode each (default 32)\n"
            "  -t N            threads for prefill and decode (default 1)\n"
            "  -r N            repetitions; median/mean/stddev reported (default 3)\n"
            "  -b N            n_batch = n_ubatch (default max(p, 512))\n"
            "  --tg-depth0     clear the KV cache before decode (llama-bench's tgN); default decodes after the prompt\n"
            "  --cpu-variant X load libggml-cpu-X.so (e.g. haswell, x64) or the .so at path X instead of the best-scoring one\n"
            "  --backend-dir D directory holding libggml-cpu-*.so (default: %s)\n"
            "  -o json         print only the JSON object\n"
            "  -v              print all llama.cpp logs\n",
            a0, LCPP_BINS_DIR[0] ? LCPP_BINS_DIR : "(set at build time)");
}

static int parse_pos_int(const char *flag, const char *s, int min, int *out) {
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < min || v > 1000000) {
        fprintf(stderr, "lcpp-bench: %s wants an integer >= %d, got '%s'\n", flag, min, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int main(int argc, char **argv) {
    const char *model_path = NULL;
    const char *cpu_variant = NULL;
    const char *backend_dir = LCPP_BINS_DIR;
    int n_prompt = 128, n_gen = 32, n_threads = 1, reps = 3, n_batch = 0;
    int warmup = 1, tg_depth0 = 0, json_only = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEEDV()                                                            \
    do {                                                                   \
        if (!v) {                                                          \
            fprintf(stderr, "lcpp-bench: %s needs a value\n", a);          \
            return 2;                                                      \
        }                                                                  \
        i++;                                                               \
    } while (0)
        if (!strcmp(a, "-m")) {
            NEEDV();
            model_path = v;
        } else if (!strcmp(a, "-p")) {
            NEEDV();
            if (parse_pos_int(a, v, 1, &n_prompt)) return 2;
        } else if (!strcmp(a, "-n")) {
            NEEDV();
            if (parse_pos_int(a, v, 0, &n_gen)) return 2;
        } else if (!strcmp(a, "-t")) {
            NEEDV();
            if (parse_pos_int(a, v, 1, &n_threads)) return 2;
        } else if (!strcmp(a, "-r")) {
            NEEDV();
            if (parse_pos_int(a, v, 1, &reps)) return 2;
        } else if (!strcmp(a, "-b")) {
            NEEDV();
            if (parse_pos_int(a, v, 1, &n_batch)) return 2;
        } else if (!strcmp(a, "--no-warmup")) {
            warmup = 0;
        } else if (!strcmp(a, "--tg-depth0")) {
            tg_depth0 = 1;
        } else if (!strcmp(a, "--cpu-variant")) {
            NEEDV();
            cpu_variant = v;
        } else if (!strcmp(a, "--backend-dir")) {
            NEEDV();
            backend_dir = v;
        } else if (!strcmp(a, "-o")) {
            NEEDV();
            if (!strcmp(v, "json")) {
                json_only = 1;
            } else if (strcmp(v, "text") != 0) {
                fprintf(stderr, "lcpp-bench: -o wants text or json, got '%s'\n", v);
                return 2;
            }
        } else if (!strcmp(a, "-v")) {
            g_verbose = 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(argv[0]);
            return 0;
        } else {
            fprintf(stderr, "lcpp-bench: unknown argument '%s'\n", a);
            usage(argv[0]);
            return 2;
        }
#undef NEEDV
    }
    if (!model_path) {
        usage(argv[0]);
        return 2;
    }
    if (n_batch == 0) {
        n_batch = n_prompt > 512 ? n_prompt : 512;
    }

    llama_log_set(log_cb, NULL);

    // Load the CPU backend: a named variant, or the best-scoring one in backend_dir.
    if (cpu_variant) {
        char path[2048];
        if (strchr(cpu_variant, '/')) {
            snprintf(path, sizeof(path), "%s", cpu_variant);
        } else {
            snprintf(path, sizeof(path), "%s/libggml-cpu-%s.so", backend_dir, cpu_variant);
        }
        if (!ggml_backend_load(path)) {
            fprintf(stderr, "lcpp-bench: could not load CPU backend %s\n", path);
            return 1;
        }
        if (!g_cpu_backend[0]) {
            snprintf(g_cpu_backend, sizeof(g_cpu_backend), "%s", path);
        }
    } else {
        ggml_backend_load_all_from_path(backend_dir[0] ? backend_dir : NULL);
    }
    ggml_backend_dev_t cpu_dev = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    if (!cpu_dev) {
        fprintf(stderr, "lcpp-bench: no CPU backend found in '%s' (pass --backend-dir)\n", backend_dir);
        return 1;
    }
    ggml_backend_reg_t cpu_reg = ggml_backend_dev_backend_reg(cpu_dev);
    typedef struct ggml_threadpool *(*tp_new_fn)(struct ggml_threadpool_params *);
    typedef void (*tp_free_fn)(struct ggml_threadpool *);
    tp_new_fn tp_new = (tp_new_fn)ggml_backend_reg_get_proc_address(cpu_reg, "ggml_threadpool_new");
    tp_free_fn tp_free = (tp_free_fn)ggml_backend_reg_get_proc_address(cpu_reg, "ggml_threadpool_free");
    if (!tp_new || !tp_free) {
        fprintf(stderr, "lcpp-bench: CPU backend lacks ggml_threadpool_new/free\n");
        return 1;
    }
    llama_backend_init();

    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    double t_load0 = now_s();
    struct llama_model *model = llama_model_load_from_file(model_path, mp);
    double t_load = now_s() - t_load0;
    if (!model) {
        fprintf(stderr, "lcpp-bench: failed to load model %s\n", model_path);
        return 1;
    }
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    int32_t n_vocab = llama_vocab_n_tokens(vocab);
    if (n_vocab <= 0) {
        fprintf(stderr, "lcpp-bench: model %s has no vocabulary size (n_vocab=%d)\n", model_path, n_vocab);
        return 1;
    }

    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)(n_prompt + n_gen);
    cp.n_batch = (uint32_t)n_batch;
    cp.n_ubatch = (uint32_t)n_batch;
    cp.n_threads = n_threads;
    cp.n_threads_batch = n_threads;
    cp.no_perf = true;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) {
        fprintf(stderr, "lcpp-bench: failed to create a context (n_ctx=%u n_batch=%d) for %s\n", cp.n_ctx, n_batch,
                model_path);
        return 1;
    }
    struct ggml_threadpool_params tpp = ggml_threadpool_params_default(n_threads);
    tpp.poll = 50;
    struct ggml_threadpool *tp = tp_new(&tpp);
    if (!tp) {
        fprintf(stderr, "lcpp-bench: ggml_threadpool_new(%d) failed\n", n_threads);
        return 1;
    }
    llama_attach_threadpool(ctx, tp, NULL);
    llama_set_n_threads(ctx, n_threads, n_threads);

    llama_token *buf = malloc(sizeof(llama_token) * (size_t)n_batch);
    double *pp_ts = calloc((size_t)reps, sizeof(double));
    double *tg_ts = calloc((size_t)reps, sizeof(double));
    double *pp_s = calloc((size_t)reps, sizeof(double));
    double *tg_s = calloc((size_t)reps, sizeof(double));

    llama_memory_t mem = llama_get_memory(ctx);
    if (warmup) {
        llama_memory_clear(mem, false);
        if (prefill(ctx, n_prompt, n_batch, n_vocab, buf) || (n_gen > 0 && generate(ctx, 1, n_vocab))) {
            return 1;
        }
    }
    for (int r = 0; r < reps; r++) {
        llama_memory_clear(mem, false);
        double t0 = now_s();
        if (prefill(ctx, n_prompt, n_batch, n_vocab, buf)) {
            return 1;
        }
        double t1 = now_s();
        if (tg_depth0) {
            llama_memory_clear(mem, false);
            t1 = now_s();
        }
        if (n_gen > 0 && generate(ctx, n_gen, n_vocab)) {
            return 1;
        }
        double t2 = now_s();
        pp_s[r] = t1 - t0;
        tg_s[r] = t2 - t1;
        pp_ts[r] = n_prompt / pp_s[r];
        tg_ts[r] = n_gen > 0 ? n_gen / tg_s[r] : 0;
    }
    struct stats pps = summarize(pp_ts, reps), tgs = summarize(tg_ts, reps);

    char desc[256] = "";
    llama_model_desc(model, desc, sizeof(desc));
    uint64_t msize = llama_model_size(model);
    uint64_t nparams = llama_model_n_params(model);
    const char *sysinfo = llama_print_system_info();

    if (!json_only) {
        printf("llama.cpp %s | model %s | %s | %.2f MiB | %.2f M params\n", llama_version(), model_path, desc,
               msize / 1048576.0, nparams / 1e6);
        printf("cpu backend: %s\n", g_cpu_backend[0] ? g_cpu_backend : "(unknown)");
        printf("system info: %s\n", sysinfo);
        printf("threads %d | n_ctx %u | n_batch %d | reps %d | warmup %s | decode %s | load %.2f s\n", n_threads,
               cp.n_ctx, n_batch, reps, warmup ? "yes" : "no",
               tg_depth0 ? "at depth 0 (KV cleared)" : "after the prompt", t_load);
        printf("%-8s %12s %12s %10s\n", "test", "median t/s", "mean t/s", "stddev");
        printf("pp%-6d %12.2f %12.2f %10.2f\n", n_prompt, pps.median, pps.mean, pps.stddev);
        if (n_gen > 0) {
            printf("tg%-6d %12.2f %12.2f %10.2f\n", n_gen, tgs.median, tgs.mean, tgs.stddev);
        }
    }
    FILE *f = stdout;
    fprintf(f, "{\"tool\":\"lcpp-bench\",\"llama_cpp_version\":");
    json_str(f, llama_version());
    fprintf(f, ",\"model\":");
    json_str(f, model_path);
    fprintf(f, ",\"model_desc\":");
    json_str(f, desc);
    fprintf(f, ",\"model_size_bytes\":%llu,\"model_n_params\":%llu,\"cpu_backend\":", (unsigned long long)msize,
            (unsigned long long)nparams);
    json_str(f, g_cpu_backend);
    fprintf(f, ",\"system_info\":");
    json_str(f, sysinfo);
    fprintf(f,
            ",\"n_threads\":%d,\"n_prompt\":%d,\"n_gen\":%d,\"n_batch\":%d,\"n_ctx\":%u,\"reps\":%d,\"warmup\":%s,"
            "\"tg_depth0\":%s,\"load_s\":%.3f,",
            n_threads, n_prompt, n_gen, n_batch, cp.n_ctx, reps, warmup ? "true" : "false",
            tg_depth0 ? "true" : "false", t_load);
    fprintf(f, "\"prefill_tps_median\":%.4f,\"prefill_tps_mean\":%.4f,\"prefill_tps_stddev\":%.4f,", pps.median,
            pps.mean, pps.stddev);
    fprintf(f, "\"decode_tps_median\":%.4f,\"decode_tps_mean\":%.4f,\"decode_tps_stddev\":%.4f,", tgs.median,
            tgs.mean, tgs.stddev);
    fprintf(f, "\"prefill_tps\":");
    json_arr(f, pp_ts, reps);
    fprintf(f, ",\"decode_tps\":");
    json_arr(f, tg_ts, reps);
    fprintf(f, ",\"prefill_s\":");
    json_arr(f, pp_s, reps);
    fprintf(f, ",\"decode_s\":");
    json_arr(f, tg_s, reps);
    fprintf(f, "}\n");

    free(buf);
    free(pp_ts);
    free(tg_ts);
    free(pp_s);
    free(tg_s);
    llama_free(ctx);
    tp_free(tp);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
