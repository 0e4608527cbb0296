/* Random factors for speed and memory measurements (bitllm quantize --random-factors): the exact
 * shapes, dtypes and middle dimensions a fit produces, with uniformly random signs (codes) and
 * positive scales, so a checkpoint of a multi-GB synthetic model can be written in seconds and runs
 * the same kernels as a fitted one. The values are nonsense but tame: every scale is FP16 and the
 * effective dense weight has entries of std ≈ TARGET_STD (like `bitllm synth`'s weights), which
 * keeps activations finite through deep models.
 *
 * The outer scales (one per row or column of Ŵ: onebit h, g; dbf a, b; mdbf A_env, B_env; rtn
 * scales) are nominal·j with a jitter j = (0.5 + u)/√(13/12), u uniform in [0, 1): E[j²] = 1, so
 * the product of independent scales has the nominal second moment. The middle scales (dbf μ, mdbf
 * Q_U, Q_V) are constant: each reaches every entry of Ŵ, and with a small k or r their jitter would
 * not average out, so the scale of a whole layer would be off by tens of percent.
 *
 * Buffers are allocated as the bl_fit_* functions allocate them (malloc'd, freed by bl_*_free).
 * Each row of a bit matrix has its own seeded generator, so the output depends on the seed only,
 * not on the thread count. */
#include "quant/qf_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const double TARGET_STD = 0.02;
static const double JITTER_RMS = 1.0408329997330663; /* √(13/12) = RMS of 0.5 + u */

/* Streams of one layer: every buffer gets its own tag. */
enum { T_SIGN_A, T_SIGN_B, T_OUTER, T_IN, T_TAGS };

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Hashed, not seed + row: bl_rng_seed expands its seed by splitmix64 steps, so nearby seeds would
 * give overlapping streams. */
static uint64_t stream_seed(uint64_t seed, int path, int tag, int64_t row) {
    const uint64_t stream = ((uint64_t)path * T_TAGS + (uint64_t)tag) << 40;
    return mix64(mix64(seed) ^ mix64(stream ^ (uint64_t)row));
}

/* rows × ceil(bits_per_row/8) bytes of uniform random bits, padding bits of each row 0. Also the
 * rtn codes: any bit pattern is a valid code, and uniform bits give uniform codes. */
static void fill_bits(uint8_t *dst, int64_t rows, int64_t bits_per_row, uint64_t seed, int path,
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

/* n FP16 values nominal·j (see the top); one stream, as vectors are small next to the bits. */
static void fill_scales(float *x, int64_t n, double nominal, uint64_t seed, int path, int tag) {
    bl_rng r;
    bl_rng_seed(&r, stream_seed(seed, path, tag, -1));
    for (int64_t i = 0; i < n; i++)
        x[i] = bl_round_f16((float)(nominal * (0.5 + bl_rng_uniform(&r)) / JITTER_RMS));
}

static void fill_const(float *x, int64_t n, double v) {
    for (int64_t i = 0; i < n; i++) x[i] = bl_round_f16((float)v);
}

static bl_status bad_shape(const char *fn, int64_t m, int64_t n, bl_err *err) {
    return bl_fail(err, BL_ERR_ARG, "%s: bad shape %lldx%lld", fn, (long long)m, (long long)n);
}

static bl_status nomem(const char *fn, int64_t m, int64_t n, bl_err *err) {
    return bl_fail(err, BL_ERR_NOMEM, "%s: %lldx%lld", fn, (long long)m, (long long)n);
}

bl_status bl_random_onebit(int64_t m, int64_t n, uint64_t seed, bl_onebit *out, bl_err *err) {
    if (!out) return bl_fail(err, BL_ERR_ARG, "bl_random_onebit: NULL output");
    memset(out, 0, sizeof *out);
    if (m < 1 || n < 1) return bad_shape("bl_random_onebit", m, n, err);
    out->m = m;
    out->n = n;
    if (!bl_qf_alloc_onebit(m, n, out)) {
        bl_onebit_free(out);
        return nomem("bl_random_onebit", m, n, err);
    }
    fill_bits(out->sign, m, n, seed, 0, T_SIGN_A);
    fill_scales(out->h, m, TARGET_STD, seed, 0, T_OUTER); /* Ŵ = diag(h)·S·diag(g) */
    fill_scales(out->g, n, 1.0, seed, 0, T_IN);
    out->post_ln = false; /* as bl_fit_onebit: plain SVID */
    return BL_OK;
}

bl_status bl_random_dbf(int64_t m, int64_t n, int64_t k, uint64_t seed, bl_dbf *out,
                        bl_err *err) {
    if (!out) return bl_fail(err, BL_ERR_ARG, "bl_random_dbf: NULL output");
    memset(out, 0, sizeof *out);
    if (m < 1 || n < 1) return bad_shape("bl_random_dbf", m, n, err);
    if (k < 1 || k > BL_MAX_MID)
        return bl_fail(err, BL_ERR_ARG, "bl_random_dbf: middle dimension %lld outside [1, %lld]",
                       (long long)k, (long long)BL_MAX_MID);
    out->m = m;
    out->n = n;
    out->k = k;
    out->A = malloc((size_t)m * (size_t)bl_sign_row_bytes(k));
    out->B = malloc((size_t)k * (size_t)bl_sign_row_bytes(n));
    out->a = malloc(sizeof(float) * (size_t)m);
    out->mu = malloc(sizeof(float) * (size_t)k);
    out->b = malloc(sizeof(float) * (size_t)n);
    if (!out->A || !out->B || !out->a || !out->mu || !out->b) {
        bl_dbf_free(out);
        return nomem("bl_random_dbf", m, n, err);
    }
    fill_bits(out->A, m, k, seed, 0, T_SIGN_A);
    fill_bits(out->B, k, n, seed, 0, T_SIGN_B);
    /* Ŵ_ij = a_i·Σ_k A_ik·μ_k·B_kj·b_j: a sum of k independent ±terms, variance k·μ² */
    fill_scales(out->a, m, 1.0, seed, 0, T_OUTER);
    fill_const(out->mu, k, TARGET_STD / sqrt((double)k));
    fill_scales(out->b, n, 1.0, seed, 0, T_IN);
    return BL_OK;
}

bl_status bl_random_mdbf(int64_t m, int64_t n, int64_t r, int l, int P, uint64_t seed,
                         bl_mdbf *out, bl_err *err) {
    if (!out) return bl_fail(err, BL_ERR_ARG, "bl_random_mdbf: NULL output");
    memset(out, 0, sizeof *out);
    if (m < 1 || n < 1) return bad_shape("bl_random_mdbf", m, n, err);
    if (r < 1 || r > BL_MAX_MID || l < 1 || P < 1)
        return bl_fail(err, BL_ERR_ARG, "bl_random_mdbf: r = %lld (max %lld), l = %d, P = %d",
                       (long long)r, (long long)BL_MAX_MID, l, P);
    out->paths = calloc((size_t)P, sizeof(bl_mdbf_path));
    if (!out->paths) return nomem("bl_random_mdbf", m, n, err);
    out->m = m;
    out->n = n;
    out->r = r;
    out->l = l;
    out->P = P;
    /* Per path Ŵ = Σ_k F_ik·G_kj over r independent ±terms, so path std 0.02/√P needs RMS
     * env(F)·env(G) = s = 0.02/√(P·r); F and G get √s each, as the fit's gauge balancing does.
     * env(F) = Σ_j A_env[i,j]·Q_U[k,j] with A_env = t·jitter and Q_U = t has second moment
     * t⁴·(l + l(l−1)·E[j]²), E[j] = 1/JITTER_RMS; t is chosen to make that s. */
    const double s = TARGET_STD / sqrt((double)P * (double)r), ej2 = pow(JITTER_RMS, -2.0);
    const double t = pow(s / (l + l * (l - 1.0) * ej2), 0.25);
    for (int p = 0; p < P; p++) {
        bl_mdbf_path *e = &out->paths[p];
        if (!bl_qf_alloc_mdbf_path(m, n, r, l, e)) {
            bl_mdbf_free(out);
            return nomem("bl_random_mdbf", m, n, err);
        }
        fill_bits(e->SA, m, r, seed, p, T_SIGN_A);
        fill_bits(e->SB, r, n, seed, p, T_SIGN_B);
        fill_scales(e->A_env, m * l, t, seed, p, T_OUTER);
        fill_const(e->Q_U, r * l, t);
        fill_const(e->Q_V, r * l, t);
        fill_scales(e->B_env, n * l, t, seed, p, T_IN);
    }
    return BL_OK;
}

bl_status bl_random_rtn(int64_t m, int64_t n, int bits, int group, uint64_t seed, bl_rtn *out,
                        bl_err *err) {
    if (!out) return bl_fail(err, BL_ERR_ARG, "bl_random_rtn: NULL output");
    memset(out, 0, sizeof *out);
    if (m < 1 || n < 1) return bad_shape("bl_random_rtn", m, n, err);
    if (bits < 1 || bits > 8)
        return bl_fail(err, BL_ERR_ARG, "bl_random_rtn: bits = %d (supported: 1..8)", bits);
    if (bits >= 2 && group < 1)
        return bl_fail(err, BL_ERR_ARG, "bl_random_rtn: group = %d must be >= 1", group);
    const int64_t ng = bits >= 2 ? (n + group - 1) / group : 1;
    out->m = m;
    out->n = n;
    out->bits = bits;
    out->group = bits >= 2 ? group : 0;
    if (!bl_qf_alloc_rtn(m, n, bits, group, out)) {
        bl_rtn_free(out);
        return nomem("bl_random_rtn", m, n, err);
    }
    fill_bits(out->q, m, n * bits, seed, 0, T_SIGN_A);
    if (bits == 1) {
        fill_scales(out->scale, m, TARGET_STD, seed, 0, T_OUTER);
        return BL_OK;
    }
    /* Codes uniform in [0, 2^bits) around the zero point (2^bits − 1)/2 (exact in FP16): the
     * dequantized values are symmetric about 0 with variance step²·(4^bits − 1)/12. */
    const double levels = (double)(1 << bits);
    fill_scales(out->scale, m * ng, TARGET_STD / sqrt((levels * levels - 1.0) / 12.0), seed, 0,
                T_OUTER);
    for (int64_t i = 0; i < m * ng; i++) out->zero[i] = (float)((levels - 1.0) / 2.0);
    return BL_OK;
}
