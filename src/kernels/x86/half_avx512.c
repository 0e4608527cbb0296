/* AVX-512 dense products: F16 rows widened with VCVTPH2PS, BF16 rows with a zero-extend and a
 * 16-bit shift, F32 rows loaded as they are, then FMA against f32 activations. No converted copy
 * of W is made, so at T = 1 the kernel reads 2 bytes per 16-bit weight and runs at memory speed.
 *
 * Summation order of every output, the same in every path: the columns in blocks of
 * BL_HALF_KBLOCK (half_rows.h); within a block one accumulator, lane k summing (by FMA, in column
 * order) the columns c with c mod 16 = k, then a fixed-order horizontal add; the blocks' sums
 * added in block order. So results depend neither on the tiling, nor on the batch size, nor on
 * the thread count.
 *
 * Decode (T = 1) reads one row at a time, 32 columns per step: a single sequential stream per
 * thread. Measured on Zen 5 with the weights in DRAM (4096×4096 and 11008×4096 F16, one
 * thread), one row at a time streams at 75-98 % of the read bandwidth, where the earlier tiles
 * of 4 rows read side by side (four interleaved streams) reached 60-70 % and two rows 45-55 %.
 * A software prefetch PF_BYTES ahead in that stream (continuing into the next rows) lifted F16
 * decode at TinyLlama dims from 12.6-13.7 to 14.5-16.0 tok/s on one thread of a quiet Zen 5
 * (1 KiB ahead: 13.1; 2 KiB: 14.0-14.8; 4-8 KiB: 14.5-16.0). At Llama-2-7B dims 8 KiB beats
 * 4 KiB on one thread: 7B F16 decode from the page cache (mmap), three alternations, 1.35-1.40
 * tok/s against 1.18-1.38 (16 KiB: 1.09-1.24, though it led in GEMVs over huge pages); on two
 * threads 2.26-2.37 against 2.06-2.30; TinyLlama dims alike within noise (8.7-8.9 against
 * 8.3-9.2 on one thread, 15.8-17.4 against 16.0-16.6 on two). A second prefetch PF_FAR ahead
 * into L2 (PREFETCHT1) keeps more of the stream in flight than the L1 fill buffers allow: on an
 * Intel Xeon (family 6 model 207, Emerald Rapids; AVX512-FP16) with T0 alone the loop drew 13-14
 * GB/s where a plain read loop drew 14-16 and llama.cpp's native-FP16 loop (a quarter of the
 * instructions per byte) 16; T0 at 4-8 KiB plus T1 at 16-64 KiB 15.3-16.0 GB/s (T1 alone
 * 14.5-14.8, two column blocks or two or four rows side by side 11-15), and TinyLlama-dims F16
 * decode 6.6-6.7 → 7.6 tok/s on one thread, 12.3-12.4 → 13.9-14.8 on two. On AMD Zen 5 the same
 * second prefetch cost 15 %: TinyLlama-dims F16 decode, one thread, three alternations, 11.0-11.2
 * tok/s with it against 12.9-13.2 without (llama.cpp 13.3 there); so it is issued on Intel CPUs
 * only (bl_cpu_is_intel, asked once per row). One accumulator per
 * output is a
 * chain of dependent FMAs, one per 32 bytes of F16 row: 8 bytes per cycle at a 4-cycle latency,
 * above what one core draws from DRAM (11008×4096 F16 decode: 3.0 ms with one accumulator,
 * 3.5 ms with two).
 *
 * Batches (T > 1) are compute-bound and use tiles of 6 rows × 4 tokens (24 accumulators): per
 * 16 columns 6 weight vectors and 4 input vectors feed 24 FMAs. One Zen 5 thread, F16, T = 128-512,
 * with the column blocks of half_rows.h: 6 × 4 with one accumulator per output 145-167 GFLOP/s
 * (4096×4096, 4096×11008); 4 × 3 with two accumulators (the earlier order, c mod 32) 124-136;
 * 5 × 5 140-158, 7 × 3 128-153, 4 × 6 133-142, 8 × 3 119-141. The machine's FMA peak is about
 * 216 GFLOP/s; on operands that fit in L1 the tiles reach 165-195. The tile's sums are reduced
 * 16 at a time (sum16, the same lane pairing as hsum16 for a single sum: same bits either way):
 * 4096×11008 F16 at T = 64, one thread, 217-220 → 233-236 GFLOP/s against one horizontal sum
 * per output (a later, faster host: 264 GFLOP/s FMA peak). */
#include "kernels/half_kernels.h"
#include "kernels/x86/sum16_avx512.h"

#include <immintrin.h>

#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define RT 6 /* rows per batched tile */
#define TT 4 /* tokens per batched tile */
#define PF_BYTES 8192 /* decode prefetch distance into L1 (above) */
#define PF_FAR 32768  /* and into L2 on Intel CPUs (above) */

ALWAYS_INLINE __m512 widen(int bf16, __m256i h) {
    return bf16 ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))
                : _mm512_cvtph_ps(h);
}

/* 16 weights from element `at` of W (those in mask k unless full), as f32. */
ALWAYS_INLINE __m512 load_w(int kind, const void *W, int64_t at, __mmask16 k, bool full) {
    if (kind == BL_WK_F32)
        return full ? _mm512_loadu_ps((const float *)W + at)
                    : _mm512_maskz_loadu_ps(k, (const float *)W + at);
    const uint16_t *h = (const uint16_t *)W + at;
    return widen(kind == BL_WK_BF16, full ? _mm256_loadu_si256((const __m256i *)h)
                                          : _mm256_maskz_loadu_epi16(k, h));
}

/* Columns [j, j+16) of R rows into acc for T tokens; k masks the columns past the block. */
ALWAYS_INLINE void step(int kind, int R, int T, const void *W, int64_t i0, int64_t n,
                        const float *x0, int64_t j, __mmask16 k, bool full, __m512 acc[RT][TT]) {
    __m512 w[RT];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) w[r] = load_w(kind, W, (i0 + r) * n + j, k, full);
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) {
        const __m512 x =
            full ? _mm512_loadu_ps(x0 + t * n + j) : _mm512_maskz_loadu_ps(k, x0 + t * n + j);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) acc[r][t] = _mm512_fmadd_ps(w[r], x, acc[r][t]);
    }
}

/* Columns [c0, c1) of Y[t0+t][i0+r] for r < R, t < T (compile-time constants after inlining):
 * stored when c0 = 0, added to what the earlier column blocks left otherwise. */
ALWAYS_INLINE void tile(int kind, int R, int T, const void *W, int64_t m, int64_t n,
                        const float *X, int64_t i0, int64_t t0, float *Y, int64_t c0,
                        int64_t c1) {
    __m512 acc[RT][TT];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    const float *x0 = X + t0 * n;
    int64_t j = c0;
    const size_t es = kind == BL_WK_F32 ? 4 : 2;
    const bool far = R == 1 && T == 1 && bl_cpu_is_intel();
    for (; j + 16 <= c1; j += 16) {
        if (R == 1 && T == 1 && (j & 31) == 0) { /* decode: one stream, fetched ahead */
            const char *at = (const char *)W + ((size_t)(i0 * n + j)) * es;
            _mm_prefetch(at + PF_BYTES, _MM_HINT_T0);
            if (far) _mm_prefetch(at + PF_FAR, _MM_HINT_T1);
        }
        step(kind, R, T, W, i0, n, x0, j, 0, true, acc);
    }
    if (j < c1) /* the last < 16 columns of the block */
        step(kind, R, T, W, i0, n, x0, j, (__mmask16)((1u << (c1 - j)) - 1u), false, acc);
    if (R * T < 8) {
#pragma GCC unroll 8
        for (int r = 0; r < R; r++)
#pragma GCC unroll 8
            for (int t = 0; t < T; t++) {
                const float s = hsum16(acc[r][t]);
                float *y = &Y[(t0 + t) * m + i0 + r];
                *y = c0 == 0 ? s : *y + s;
            }
        return;
    }
    /* The tile's sums 16 at a time (sum16: the same bits as hsum16 of each), TG tokens' R rows
     * per vector, lane (t − tg)·R + r; each token's R sums stored or added with one masked
     * access (the 6 × 4 tile spent 24 reductions per column block of 64 steps before). */
    const int TG = 16 / R;
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __mmask16 rmask = (__mmask16)((1u << R) - 1u);
#pragma GCC unroll 4
    for (int tg = 0; tg < T; tg += TG) {
        __m512 v[16];
#pragma GCC unroll 16
        for (int p = 0; p < 16; p++) {
            const int t = tg + p / R, r = p % R;
            v[SIGMA[p]] = p < TG * R && t < T ? acc[r][t] : _mm512_setzero_ps();
        }
        const __m512 sums = sum16(v);
#pragma GCC unroll 16
        for (int u = 0; u < TG; u++) {
            const int t = tg + u;
            if (t >= T) break;
            const __m512 st =
                _mm512_permutexvar_ps(_mm512_add_epi32(iota, _mm512_set1_epi32(u * R)), sums);
            float *y = &Y[(t0 + t) * m + i0];
            _mm512_mask_storeu_ps(
                y, rmask, c0 == 0 ? st : _mm512_add_ps(_mm512_maskz_loadu_ps(rmask, y), st));
        }
    }
}

#include "kernels/x86/half_rows.h"

void bl_half_avx512(const bl_half_job *j, int64_t u0, int64_t u1) { run_units(j, u0, u1); }

void bl_f32_to_f16_n_avx512(const float *src, uint16_t *dst, size_t count) {
    enum { RNE = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC };
    size_t i = 0;
    for (; i + 16 <= count; i += 16)
        _mm256_storeu_si256((__m256i *)(dst + i), _mm512_cvtps_ph(_mm512_loadu_ps(src + i), RNE));
    if (i < count) {
        const __mmask16 k = (__mmask16)((1u << (count - i)) - 1);
        _mm256_mask_storeu_epi16(dst + i, k, _mm512_cvtps_ph(_mm512_maskz_loadu_ps(k, src + i), RNE));
    }
}

void bl_half_to_f32_avx512(bl_dtype dt, const uint16_t *src, float *dst, size_t count) {
    const int bf16 = dt == BL_DT_BF16;
    size_t i = 0;
    for (; i + 16 <= count; i += 16)
        _mm512_storeu_ps(dst + i, widen(bf16, _mm256_loadu_si256((const __m256i *)(src + i))));
    if (i < count) {
        const __mmask16 k = (__mmask16)((1u << (count - i)) - 1);
        _mm512_mask_storeu_ps(dst + i, k, widen(bf16, _mm256_maskz_loadu_epi16(k, src + i)));
    }
}
