/* Run-time choice of the sign-matrix and 16-bit dense kernels, and the bl_signmat lifecycle.
 *
 * The dispatch level is one of the library's two mutable globals (the other is the checkpoint
 * load mode of src/core/file.c, set up the same way): it is computed once, at first use,
 * from the CPU (bl_cpu_best_isa) and the BITLLM_ISA environment variable (ref|avx2|avx512, clamped
 * to what the CPU supports; anything else means "best"), and afterwards changes only through
 * bl_kernels_set_isa, which tests and benchmarks use. An atomic int makes a first use from several
 * threads harmless: they all compute the same value. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/half_kernels.h"
#include "kernels/sign_kernels.h"

static atomic_int g_isa = -1;

static bl_isa clamp_isa(bl_isa isa) {
    bl_isa best = bl_cpu_best_isa();
    if ((int)isa < (int)BL_ISA_REF) return BL_ISA_REF;
    return (int)isa > (int)best ? best : isa;
}

static bl_isa isa_from_env(void) {
    const char *e = getenv("BITLLM_ISA");
    if (e && strcmp(e, "ref") == 0) return clamp_isa(BL_ISA_REF);
    if (e && strcmp(e, "avx2") == 0) return clamp_isa(BL_ISA_AVX2);
    if (e && strcmp(e, "avx512") == 0) return clamp_isa(BL_ISA_AVX512);
    return bl_cpu_best_isa();
}

bl_isa bl_kernels_isa(void) {
    int v = atomic_load_explicit(&g_isa, memory_order_acquire);
    if (v < 0) {
        int expected = -1;
        atomic_compare_exchange_strong(&g_isa, &expected, (int)isa_from_env());
        v = atomic_load_explicit(&g_isa, memory_order_acquire);
    }
    return (bl_isa)v;
}

bl_isa bl_kernels_set_isa(bl_isa isa) {
    bl_isa v = clamp_isa(isa);
    atomic_store_explicit(&g_isa, (int)v, memory_order_release);
    return v;
}

const char *bl_isa_name(bl_isa isa) {
    switch (isa) {
    case BL_ISA_REF: return "ref";
    case BL_ISA_AVX2: return "avx2";
    case BL_ISA_AVX512: return "avx512";
    }
    return "unknown";
}

/* The table of compiled variants; the first of each (isa, transposed) pair is the default. */
static const bl_sign_variant variants[] = {
    {"ref", BL_ISA_REF, false, false, bl_sign_matmul_ref,
     "scalar, double accumulation in column order (the specification)"},
    {"ref_t", BL_ISA_REF, true, false, bl_sign_matmul_t_ref,
     "scalar, double accumulation in row order (the specification)"},
    {"lut3", BL_ISA_AVX2, false, true, bl_sign_mm_avx2_lut,
     "f32 tables of the 8 signed sums per 3 inputs, one VPERMPS per group, packed rows"},
    {"lut3_gather", BL_ISA_AVX2, false, false, bl_sign_mm_avx2_gather,
     "lut3 reading canonical rows with VPGATHERDD (unprepared matrices)"},
    {"mask", BL_ISA_AVX2, false, false, bl_sign_mm_avx2_mask,
     "columns in lanes, bits -> VBLENDVPS selects, y = sum(x) - 2*sum(selected)"},
    {"mask_t", BL_ISA_AVX2, true, false, bl_sign_mm_t_avx2,
     "columns in lanes, rows in order, z = sum(v) - 2*sum(selected)"},
    {"lut4", BL_ISA_AVX512, false, true, bl_sign_mm_avx512_lut,
     "f32 tables of the 16 signed sums per 4 inputs, one VPERMPS per nibble, packed rows"},
    {"lut4_gather", BL_ISA_AVX512, false, false, bl_sign_mm_avx512_gather,
     "lut4 reading canonical rows with VPGATHERDD (unprepared matrices)"},
    {"mask", BL_ISA_AVX512, false, false, bl_sign_mm_avx512_mask,
     "columns in lanes, k-masked VADDPS, y = sum(x) - 2*sum(selected)"},
    {"lut4_t", BL_ISA_AVX512, true, true, bl_sign_mm_t_avx512_lut,
     "tables over 4-row groups, columns in lanes, bit tiles transposed with GF2P8AFFINEQB "
     "(falls back to mask_t without GFNI or packing)"},
    {"mask_t", BL_ISA_AVX512, true, false, bl_sign_mm_t_avx512_mask,
     "columns in lanes, k-masked VADDPS over rows in order, z = sum(v) - 2*sum(selected)"},
};

bool bl_cpu_has_gfni(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("gfni");
}

const bl_sign_variant *bl_sign_variants(int *count) {
    *count = (int)(sizeof variants / sizeof variants[0]);
    return variants;
}

void bl_signmat_init(bl_signmat *S, int64_t m, int64_t n, const uint8_t *bits) {
    S->m = m;
    S->n = n;
    S->bits = bits;
    S->packed = NULL;
    S->packed_bytes = 0;
    S->packed_isa = BL_ISA_REF;
}

bl_status bl_signmat_prepare(bl_signmat *S, bl_err *err) {
    if (S->m < 0 || S->n < 0)
        return bl_fail(err, BL_ERR_ARG, "sign matrix: bad shape %lld x %lld", (long long)S->m,
                       (long long)S->n);
    if (!S->bits && S->m > 0 && S->n > 0)
        return bl_fail(err, BL_ERR_ARG, "sign matrix %lld x %lld: no bits", (long long)S->m,
                       (long long)S->n);
    bl_isa isa = bl_kernels_isa();
    /* The reference reads the canonical bits; the AVX2 and AVX-512 kernels share one layout, so
     * a matrix packed under either level serves both. The packing is a copy: whoever changes the
     * bits afterwards must release and prepare again. */
    if (isa == BL_ISA_REF || S->packed || S->m == 0 || S->n == 0) return BL_OK;
    bl_sb_geom g = bl_sb_geometry(S->m, S->n);
    size_t bytes;
    if (bl_mul_overflows((size_t)g.blocks, (size_t)g.words, &bytes) ||
        bl_mul_overflows(bytes, BL_SB_ROWS * sizeof(uint32_t), &bytes))
        return bl_fail(err, BL_ERR_NOMEM, "sign matrix %lld x %lld: packed size overflows",
                       (long long)S->m, (long long)S->n);
    uint32_t *p = bl_aligned_alloc(bytes);
    if (!p)
        return bl_fail(err, BL_ERR_NOMEM, "sign matrix %lld x %lld: cannot allocate %zu bytes",
                       (long long)S->m, (long long)S->n, bytes);
    bl_sb_pack(S->m, S->n, S->bits, p);
    S->packed = p;
    S->packed_bytes = bytes;
    S->packed_isa = isa;
    return BL_OK;
}

void bl_signmat_release(bl_signmat *S) {
    bl_aligned_free(S->packed);
    S->packed = NULL;
    S->packed_bytes = 0;
    S->packed_isa = BL_ISA_REF;
}

void bl_sign_matmul(const bl_signmat *S, const float *X, int64_t T, float *Y) {
    switch (bl_kernels_isa()) {
    case BL_ISA_AVX512: bl_sign_mm_avx512(S, X, T, Y); return;
    case BL_ISA_AVX2: bl_sign_mm_avx2(S, X, T, Y); return;
    case BL_ISA_REF: break;
    }
    bl_sign_matmul_ref(S, X, T, Y);
}

void bl_sign_matmul_t(const bl_signmat *S, const float *V, int64_t T, float *Z) {
    switch (bl_kernels_isa()) {
    case BL_ISA_AVX512: bl_sign_mm_t_avx512(S, V, T, Z); return;
    case BL_ISA_AVX2: bl_sign_mm_t_avx2(S, V, T, Z); return;
    case BL_ISA_REF: break;
    }
    bl_sign_matmul_t_ref(S, V, T, Z);
}

void bl_half_matmul(bl_dtype dt, const uint16_t *W, int64_t m, int64_t n, const float *X,
                    int64_t T, float *Y) {
    switch (bl_kernels_isa()) {
    case BL_ISA_AVX512: bl_half_matmul_avx512(dt, W, m, n, X, T, Y); return;
    case BL_ISA_AVX2: bl_half_matmul_avx2(dt, W, m, n, X, T, Y); return;
    case BL_ISA_REF: break;
    }
    bl_half_matmul_ref(dt, W, m, n, X, T, Y);
}

void bl_f32_matmul(const float *W, int64_t m, int64_t n, const float *X, int64_t T, float *Y) {
    switch (bl_kernels_isa()) {
    case BL_ISA_AVX512: bl_f32_matmul_avx512(W, m, n, X, T, Y); return;
    case BL_ISA_AVX2: bl_f32_matmul_avx2(W, m, n, X, T, Y); return;
    case BL_ISA_REF: break;
    }
    bl_f32_matmul_ref(W, m, n, X, T, Y);
}

void bl_half_to_f32(bl_dtype dt, const uint16_t *src, float *dst, size_t count) {
    switch (bl_kernels_isa()) {
    case BL_ISA_AVX512: bl_half_to_f32_avx512(dt, src, dst, count); return;
    case BL_ISA_AVX2: bl_half_to_f32_avx2(dt, src, dst, count); return;
    case BL_ISA_REF: break;
    }
    bl_half_to_f32_ref(dt, src, dst, count);
}
