// lcpp-quantize: quantize a GGUF with llama.cpp's own llama_model_quantize(),
// taken from the prebuilt libllama shipped in the npm package
// @node-llama-cpp/linux-x64 (see README.md). No importance matrix is used.
//
// Usage: lcpp-quantize IN.gguf OUT.gguf TYPE [NTHREADS]
//   TYPE: F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K_S Q3_K_M Q3_K_L
//         Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K IQ4_NL IQ4_XS IQ3_S IQ3_M IQ3_XS
//         TQ1_0 TQ2_0 (and IQ3_XXS IQ2_* IQ1_* Q2_K_S, which llama.cpp refuses
//         without an importance matrix)
//
// Compiled against the real llama.h of the matching llama.cpp source (the
// git bundle inside the node-llama-cpp npm package), so every struct layout
// is the library's own.
#include "llama.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#ifndef LCPP_BINS_DIR
#define LCPP_BINS_DIR ""
#endif

struct ftype_name {
    const char *name;
    enum llama_ftype ftype;
};

static const struct ftype_name k_types[] = {
    {"F32", LLAMA_FTYPE_ALL_F32},
    {"F16", LLAMA_FTYPE_MOSTLY_F16},
    {"BF16", LLAMA_FTYPE_MOSTLY_BF16},
    {"Q4_0", LLAMA_FTYPE_MOSTLY_Q4_0},
    {"Q4_1", LLAMA_FTYPE_MOSTLY_Q4_1},
    {"Q5_0", LLAMA_FTYPE_MOSTLY_Q5_0},
    {"Q5_1", LLAMA_FTYPE_MOSTLY_Q5_1},
    {"Q8_0", LLAMA_FTYPE_MOSTLY_Q8_0},
    {"Q2_K", LLAMA_FTYPE_MOSTLY_Q2_K},
    {"Q2_K_S", LLAMA_FTYPE_MOSTLY_Q2_K_S},
    {"Q3_K_S", LLAMA_FTYPE_MOSTLY_Q3_K_S},
    {"Q3_K_M", LLAMA_FTYPE_MOSTLY_Q3_K_M},
    {"Q3_K_L", LLAMA_FTYPE_MOSTLY_Q3_K_L},
    {"Q4_K_S", LLAMA_FTYPE_MOSTLY_Q4_K_S},
    {"Q4_K_M", LLAMA_FTYPE_MOSTLY_Q4_K_M},
    {"Q5_K_S", LLAMA_FTYPE_MOSTLY_Q5_K_S},
    {"Q5_K_M", LLAMA_FTYPE_MOSTLY_Q5_K_M},
    {"Q6_K", LLAMA_FTYPE_MOSTLY_Q6_K},
    {"IQ2_XXS", LLAMA_FTYPE_MOSTLY_IQ2_XXS},
    {"IQ2_XS", LLAMA_FTYPE_MOSTLY_IQ2_XS},
    {"IQ2_S", LLAMA_FTYPE_MOSTLY_IQ2_S},
    {"IQ2_M", LLAMA_FTYPE_MOSTLY_IQ2_M},
    {"IQ3_XXS", LLAMA_FTYPE_MOSTLY_IQ3_XXS},
    {"IQ3_XS", LLAMA_FTYPE_MOSTLY_IQ3_XS},
    {"IQ3_S", LLAMA_FTYPE_MOSTLY_IQ3_S},
    {"IQ3_M", LLAMA_FTYPE_MOSTLY_IQ3_M},
    {"IQ1_S", LLAMA_FTYPE_MOSTLY_IQ1_S},
    {"IQ1_M", LLAMA_FTYPE_MOSTLY_IQ1_M},
    {"IQ4_NL", LLAMA_FTYPE_MOSTLY_IQ4_NL},
    {"IQ4_XS", LLAMA_FTYPE_MOSTLY_IQ4_XS},
    {"TQ1_0", LLAMA_FTYPE_MOSTLY_TQ1_0},
    {"TQ2_0", LLAMA_FTYPE_MOSTLY_TQ2_0},
};

static void usage(const char *argv0) {
    fprintf(stderr, "usage: %s IN.gguf OUT.gguf TYPE [NTHREADS]\nTYPE is one of:", argv0);
    for (size_t i = 0; i < sizeof(k_types) / sizeof(k_types[0]); i++) {
        fprintf(stderr, " %s", k_types[i].name);
    }
    fprintf(stderr, "\n");
}

int main(int argc, char **argv) {
    if (argc < 4 || argc > 5) {
        usage(argv[0]);
        return 2;
    }
    const char *in = argv[1];
    const char *out = argv[2];
    const char *tname = argv[3];
    int nthread = 0; // 0: llama.cpp uses hardware_concurrency()
    if (argc == 5) {
        char *end = NULL;
        long v = strtol(argv[4], &end, 10);
        if (*argv[4] == '\0' || *end != '\0' || v < 0 || v > 1024) {
            fprintf(stderr, "lcpp-quantize: NTHREADS must be an integer in [0,1024], got '%s'\n", argv[4]);
            return 2;
        }
        nthread = (int)v;
    }
    int found = -1;
    for (size_t i = 0; i < sizeof(k_types) / sizeof(k_types[0]); i++) {
        if (strcasecmp(k_types[i].name, tname) == 0) {
            found = (int)i;
            break;
        }
    }
    if (found < 0) {
        fprintf(stderr, "lcpp-quantize: unknown TYPE %s\n", tname);
        usage(argv[0]);
        return 2;
    }

    // Quantization itself runs in ggml-base; loading the CPU backend first only
    // keeps llama_backend_init() from searching the cwd/executable directory.
    if (LCPP_BINS_DIR[0]) {
        ggml_backend_load_all_from_path(LCPP_BINS_DIR);
    }
    llama_backend_init();
    struct llama_model_quantize_params qp = llama_model_quantize_default_params();
    qp.nthread = nthread;
    qp.ftype = k_types[found].ftype;

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint32_t rc = llama_model_quantize(in, out, &qp);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    llama_backend_free();
    if (rc != 0) {
        fprintf(stderr, "lcpp-quantize: llama_model_quantize(%s -> %s, %s) failed (rc=%u)\n", in, out,
                k_types[found].name, rc);
        return 1;
    }
    fprintf(stderr, "lcpp-quantize: wrote %s (%s) in %.1f s\n", out, k_types[found].name, secs);
    return 0;
}
