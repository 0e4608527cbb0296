/* Round-to-nearest baselines (ALGORITHMS.md §6).
 *   bits = 1:  W ≈ diag(α)·sign(W), α_r = mean_j |W_rj|.
 *   bits ≥ 2:  asymmetric min/max quantization per group of `group` input columns,
 *              ŵ = (q − zero)·scale, q ∈ [0, 2^bits − 1].
 * The range of each group is extended to contain 0 (as GPTQ's asymmetric quantizer does), which
 * keeps zero in [0, 2^bits − 1] — an integer that FP16 stores exactly — and makes degenerate groups
 * (all equal or all zero) harmless. Codes are computed with the FP16-rounded scale and zero, so a
 * layer saved and reloaded computes exactly what the fitted one does. */
#include "quant/qf_internal.h"
#include "bitllm/formats/rtn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const float F16_MAX = 65504.0f;

static void fit_rtn1(const float *W, int64_t m, int64_t n, bl_rtn *out) {
    bl_qf_pack_signs(W, m, n, out->q);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < m; i++) {
        double s = 0.0;
        for (int64_t j = 0; j < n; j++) s += fabs((double)W[i * n + j]);
        float a = (float)(s / (double)n);
        out->scale[i] = bl_round_f16(a < F16_MAX ? a : F16_MAX);
    }
}

static void put_code(uint8_t *row, int64_t j, int bits, unsigned code) {
    int64_t pos = j * bits;
    int64_t byte = pos >> 3;
    int shift = (int)(pos & 7);
    row[byte] |= (uint8_t)(code << shift);
    if (shift + bits > 8) row[byte + 1] |= (uint8_t)(code >> (8 - shift));
}

static void fit_rtnk(const float *W, int64_t m, int64_t n, int bits, int64_t group, bl_rtn *out) {
    int64_t ng = (n + group - 1) / group;
    int64_t rb = (n * bits + 7) / 8;
    float maxq = (float)((1 << bits) - 1);
    memset(out->q, 0, (size_t)(m * rb));
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < m; i++) {
        const float *w = W + i * n;
        uint8_t *row = out->q + i * rb;
        for (int64_t g = 0; g < ng; g++) {
            int64_t j0 = g * group, j1 = j0 + group < n ? j0 + group : n;
            float lo = 0.0f, hi = 0.0f;
            for (int64_t j = j0; j < j1; j++) {
                lo = w[j] < lo ? w[j] : lo;
                hi = w[j] > hi ? w[j] : hi;
            }
            float sc = (hi - lo) / maxq;
            sc = bl_round_f16(sc < F16_MAX ? sc : F16_MAX);
            float zero = 0.0f;
            if (sc > 0.0f) {
                zero = nearbyintf(-lo / sc);
                zero = zero < 0.0f ? 0.0f : zero > maxq ? maxq : zero;
            }
            out->scale[i * ng + g] = sc;
            out->zero[i * ng + g] = zero;
            for (int64_t j = j0; j < j1; j++) {
                float q = sc > 0.0f ? nearbyintf(w[j] / sc) + zero : zero;
                q = q < 0.0f ? 0.0f : q > maxq ? maxq : q;
                put_code(row, j, bits, (unsigned)q);
            }
        }
    }
}

/* The buffers of a result (malloc'd; bl_rtn_free releases them): bits 1 → m × ceil(n/8) sign
 * bytes and m scales; bits ≥ 2 → codes and m·⌈n/group⌉ scales and zero points. On failure
 * nothing stays allocated, the pointers are NULL and false is returned. */
static bool alloc_rtn(int64_t m, int64_t n, int bits, int group, bl_rtn *out) {
    const int64_t ng = bits >= 2 ? (n + group - 1) / group : 1;
    out->q = malloc((size_t)m * (size_t)((n * bits + 7) / 8)); /* = the sign layout for bits 1 */
    out->scale = malloc(sizeof(float) * (size_t)(m * ng));
    out->zero = bits >= 2 ? malloc(sizeof(float) * (size_t)(m * ng)) : NULL;
    if (out->q && out->scale && (bits < 2 || out->zero)) return true;
    free(out->q), free(out->scale), free(out->zero);
    out->q = NULL, out->scale = NULL, out->zero = NULL;
    return false;
}

bl_status bl_fit_rtn(const float *W, int64_t m, int64_t n, int bits, int group, bl_rtn *out,
                     bl_err *err) {
    if (!out) return bl_fail(err, BL_ERR_ARG, "bl_fit_rtn: NULL output");
    memset(out, 0, sizeof *out);
    if (!W || m < 1 || n < 1)
        return bl_fail(err, BL_ERR_ARG, "bl_fit_rtn: bad input (%lldx%lld)", (long long)m,
                       (long long)n);
    if (bits < 1 || bits > 8)
        return bl_fail(err, BL_ERR_ARG, "bl_fit_rtn: bits = %d (supported: 1..8)", bits);
    if (bits >= 2 && group < 1)
        return bl_fail(err, BL_ERR_ARG, "bl_fit_rtn: group = %d must be >= 1", group);
    for (int64_t i = 0; i < m * n; i++)
        if (!isfinite(W[i]))
            return bl_fail(err, BL_ERR_NUMERIC, "bl_fit_rtn: W[%lld] is not finite", (long long)i);
    out->m = m;
    out->n = n;
    out->bits = bits;
    out->group = bits >= 2 ? group : 0;
    if (!alloc_rtn(m, n, bits, group, out)) {
        memset(out, 0, sizeof *out);
        return bl_fail(err, BL_ERR_NOMEM, "bl_fit_rtn: %lldx%lld", (long long)m, (long long)n);
    }
    if (bits == 1)
        fit_rtn1(W, m, n, out);
    else
        fit_rtnk(W, m, n, bits, group, out);
    return BL_OK;
}

/* ---- random factors (benchmarks; fit.h, the draws of random_factors.c) ---- */

bl_status bl_random_rtn(int64_t m, int64_t n, int bits, int group, uint64_t seed, bl_rtn *out,
                        bl_err *err) {
    bl_status s = bl_qf_random_start("bl_random_rtn", out, sizeof *out, m, n, err);
    if (s) return s;
    if (bits < 1 || bits > 8)
        return bl_fail(err, BL_ERR_ARG, "bl_random_rtn: bits = %d (supported: 1..8)", bits);
    if (bits >= 2 && group < 1)
        return bl_fail(err, BL_ERR_ARG, "bl_random_rtn: group = %d must be >= 1", group);
    const int64_t ng = bits >= 2 ? (n + group - 1) / group : 1;
    out->m = m;
    out->n = n;
    out->bits = bits;
    out->group = bits >= 2 ? group : 0;
    if (!alloc_rtn(m, n, bits, group, out)) {
        bl_rtn_free(out);
        return bl_qf_random_nomem("bl_random_rtn", m, n, err);
    }
    bl_qf_random_bits(out->q, m, n * bits, seed, 0, BL_QF_RT_SIGN_A);
    if (bits == 1) {
        bl_qf_random_scales(out->scale, m, BL_QF_RANDOM_STD, seed, 0, BL_QF_RT_OUTER);
        return BL_OK;
    }
    /* Codes uniform in [0, 2^bits) around the zero point (2^bits − 1)/2 (exact in FP16): the
     * dequantized values are symmetric about 0 with variance step²·(4^bits − 1)/12. */
    const double levels = (double)(1 << bits);
    bl_qf_random_scales(out->scale, m * ng,
                        BL_QF_RANDOM_STD / sqrt((levels * levels - 1.0) / 12.0), seed, 0,
                        BL_QF_RT_OUTER);
    for (int64_t i = 0; i < m * ng; i++) out->zero[i] = (float)((levels - 1.0) / 2.0);
    return BL_OK;
}
