/* Random factors for speed and memory measurements (bitllm quantize --random-factors): the exact
 * shapes, dtypes and middle dimensions a fit produces, with uniformly random signs (codes) and
 * positive scales, so a checkpoint of a multi-GB synthetic model can be written in seconds and runs
 * the same kernels as a fitted one. The values are nonsense but tame: every scale is FP16 and the
 * effective dense weight has entries of std ≈ BL_QF_RANDOM_STD (like `bitllm synth`'s weights),
 * which keeps activations finite through deep models.
 *
 * This file holds the draws every format's bl_random_<name> (next to its fit) is made of. The
 * outer scales (one per row or column of Ŵ) are nominal·j with a jitter
 * j = (0.5 + u)/√(13/12), u uniform in [0, 1): E[j²] = 1, so the product of independent scales
 * has the nominal second moment. The middle scales of a factored format are constant: each reaches
 * every entry of Ŵ, and with a small middle dimension their jitter would not average out, so the
 * scale of a whole layer would be off by tens of percent.
 *
 * Buffers are allocated as the bl_fit_* functions allocate them (malloc'd, freed by bl_*_free).
 * Each row of a bit matrix has its own seeded generator, so the output depends on the seed only,
 * not on the thread count. */
#include "quant/qf_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Hashed, not seed + row: bl_rng_seed expands its seed by splitmix64 steps, so nearby seeds would
 * give overlapping streams. */
static uint64_t stream_seed(uint64_t seed, int path, int tag, int64_t row) {
    const uint64_t stream = ((uint64_t)path * BL_QF_RT_TAGS + (uint64_t)tag) << 40;
    return mix64(mix64(seed) ^ mix64(stream ^ (uint64_t)row));
}

void bl_qf_random_bits(uint8_t *dst, int64_t rows, int64_t bits_per_row, uint64_t seed, int path,
                       int tag) {
    const int64_t rb = (bits_per_row + 7) / 8;
    const uint8_t last = bits_per_row % 8 ? (uint8_t)((1u << (bits_per_row % 8)) - 1) : 0xff;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < rows; i++) {
        bl_rng r;
        bl_rng_seed(&r, stream_seed(seed, path, tag, i));
        uint8_t *row = dst + i * rb;
        for (int64_t b = 0; b < rb; b += 8) {
            uint64_t v = bl_rng_u64(&r);
            for (int64_t t = 0; t < 8 && b + t < rb; t++) row[b + t] = (uint8_t)(v >> (8 * t));
        }
        row[rb - 1] &= last;
    }
}

void bl_qf_random_scales(float *x, int64_t n, double nominal, uint64_t seed, int path, int tag) {
    bl_rng r;
    bl_rng_seed(&r, stream_seed(seed, path, tag, -1));
    for (int64_t i = 0; i < n; i++)
        x[i] = bl_round_f16((float)(nominal * (0.5 + bl_rng_uniform(&r)) / BL_QF_JITTER_RMS));
}

void bl_qf_random_const(float *x, int64_t n, double v) {
    for (int64_t i = 0; i < n; i++) x[i] = bl_round_f16((float)v);
}

bl_status bl_qf_random_start(const char *fn, void *out, size_t size, int64_t m, int64_t n,
                             bl_err *err) {
    if (!out) return bl_fail(err, BL_ERR_ARG, "%s: NULL output", fn);
    memset(out, 0, size);
    if (m < 1 || n < 1)
        return bl_fail(err, BL_ERR_ARG, "%s: bad shape %lldx%lld", fn, (long long)m, (long long)n);
    return BL_OK;
}

bl_status bl_qf_random_nomem(const char *fn, int64_t m, int64_t n, bl_err *err) {
    return bl_fail(err, BL_ERR_NOMEM, "%s: %lldx%lld", fn, (long long)m, (long long)n);
}
