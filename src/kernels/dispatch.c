/* The kernels' one driver: which micro-kernel runs (from the bl_exec's ISA level, clamped to the
 * CPU), how the work is cut across the pool's threads, and the bl_signmat lifecycle.
 *
 * Threading: every product is cut into fixed units — 16-row blocks of Y for the sign products,
 * 64-column blocks of Z for the transposed ones, BL_HALF_ROW_GROUP rows for the 16-bit ones — and
 * each thread gets one contiguous range of units. A unit is always computed by one call of the
 * same micro-kernel, so results are bitwise identical at every thread count. Products below
 * PAR_MIN_WORK multiply-adds run on the calling thread (a dispatch costs more than they do). The
 * ISA files (x86/) export micro-kernels only; none of them starts a thread. */
#include <stdlib.h>
#include <string.h>

#include "kernels/act_kernels.h"
#include "kernels/half_kernels.h"
#include "kernels/qmat_kernels.h"
#include "kernels/sign_kernels.h"

#define PAR_MIN_WORK (1 << 18)
#define PACK_PAR_MIN_BITS (INT64_C(1) << 22)
#define TOT_TILE 64 /* tokens per driver pass for the variants that need Σ of each input row */

static bl_isa exec_isa(const bl_exec *ex) { return bl_isa_clamp(ex ? ex->isa : BL_ISA_AUTO); }
static bl_pool *exec_pool(const bl_exec *ex) { return ex ? ex->pool : NULL; }

/* run(call, ·, ·) over [0, units), split across the pool when the product is large enough. */
static void split(bl_pool *pool, double work, int64_t units, bl_range_fn run, void *call) {
    bl_pool_for(pool, units, work >= PAR_MIN_WORK, run, call);
}

/* ---- sign-matrix variants ---- */

typedef struct {
    bl_sign_range_fn fn; /* NULL: the scalar reference (whole product, one thread) */
    bool use_packed;     /* read S->packed when present (else always the canonical bits) */
    bool needs_tot;
    bool needs_gfni;
    bool needs_vbmi; /* and VNNI */
    int fallback; /* variant to run instead when packing, GFNI or VBMI is missing; -1: none */
    bool own_tables; /* builds the lookup tables of every column (or row) it reads in each call */
    bool fuses_scales; /* applies bl_sign_job's in_scale / out_scale */
} variant_impl;

/* The table of compiled variants; the first of each (isa, transposed) pair is the default. */
static const bl_sign_variant variants[] = {
    {"ref", BL_ISA_REF, false, false, BL_TABLES_F32,
     "scalar, double accumulation in column order (the specification)"},
    {"ref_t", BL_ISA_REF, true, false, BL_TABLES_F32,
     "scalar, double accumulation in row order (the specification)"},
    {"lut3", BL_ISA_AVX2, false, true, BL_TABLES_F32,
     "f32 tables of the 8 signed sums per 3 inputs, one VPERMPS per group, packed rows"},
    {"lut3_gather", BL_ISA_AVX2, false, false, BL_TABLES_F32,
     "lut3 reading canonical rows with VPGATHERDD (unprepared matrices)"},
    {"mask", BL_ISA_AVX2, false, false, BL_TABLES_F32,
     "columns in lanes, bits -> VBLENDVPS selects, y = sum(x) - 2*sum(selected)"},
    {"mask_t", BL_ISA_AVX2, true, false, BL_TABLES_F32,
     "columns in lanes, rows in order, z = sum(v) - 2*sum(selected)"},
    {"lut4", BL_ISA_AVX512, false, true, BL_TABLES_F32,
     "f32 tables of the 16 signed sums per 4 inputs, one VPERMPS per nibble, packed rows"},
    {"lut4_gather", BL_ISA_AVX512, false, false, BL_TABLES_F32,
     "lut4 reading canonical rows with VPGATHERDD (unprepared matrices)"},
    {"mask", BL_ISA_AVX512, false, false, BL_TABLES_F32,
     "columns in lanes, k-masked VADDPS, y = sum(x) - 2*sum(selected)"},
    {"lut4_t", BL_ISA_AVX512, true, true, BL_TABLES_F32,
     "tables over 4-row groups, columns in lanes, bit tiles transposed with GF2P8AFFINEQB "
     "(falls back to mask_t without GFNI or packing)"},
    {"mask_t", BL_ISA_AVX512, true, false, BL_TABLES_F32,
     "columns in lanes, k-masked VADDPS over rows in order, z = sum(v) - 2*sum(selected)"},
    {"i8_ref", BL_ISA_REF, false, false, BL_TABLES_I8,
     "scalar int8 tables, a step per 32 columns in units per 512, exact int32 sums "
     "(the specification)"},
    {"lut4_i8", BL_ISA_AVX512, false, true, BL_TABLES_I8,
     "int8 tables of the 16 signed sums per 4 inputs, VPERMB + VPDPBUSD, packed rows "
     "(falls back to the AVX2 lut4_i8 without VBMI/VNNI, to i8_ref without packing)"},
    {"lut4_i8", BL_ISA_AVX2, false, true, BL_TABLES_I8,
     "int8 tables of the 16 signed sums per 4 inputs, VPSHUFB over 32 rows, codes summed "
     "by VPMADDUBSW, words scaled by VPMADDWD, packed rows (falls back to i8_ref without packing)"},
};
enum { V_REF, V_REF_T, V_LUT3, V_LUT3_GATHER, V_MASK2, V_MASK_T2, V_LUT4, V_LUT4_GATHER,
       V_MASK512, V_LUT4_T, V_MASK_T512, V_I8_REF, V_LUT4_I8, V_LUT4_I8_AVX2, V_COUNT };
static const variant_impl impls[] = {
    [V_REF] = {NULL, false, false, false, false, -1, false, false},
    [V_REF_T] = {NULL, false, false, false, false, -1, false, false},
    [V_LUT3] = {bl_sign_avx2_lut, true, false, false, false, -1, true, false},
    [V_LUT3_GATHER] = {bl_sign_avx2_lut, false, false, false, false, -1, true, false},
    [V_MASK2] = {bl_sign_avx2_mask, false, true, false, false, -1, false, false},
    [V_MASK_T2] = {bl_sign_t_avx2_mask, false, true, false, false, -1, false, false},
    [V_LUT4] = {bl_sign_avx512_lut, true, false, false, false, -1, true, true},
    [V_LUT4_GATHER] = {bl_sign_avx512_lut, false, false, false, false, -1, true, true},
    [V_MASK512] = {bl_sign_avx512_mask, false, true, false, false, -1, false, false},
    [V_LUT4_T] = {bl_sign_t_avx512_lut, true, false, true, false, V_MASK_T512, true, false},
    [V_MASK_T512] = {bl_sign_t_avx512_mask, false, true, false, false, -1, false, false},
    [V_I8_REF] = {NULL, false, false, false, false, -1, false, false},
    [V_LUT4_I8] = {bl_sign_avx512_lut_i8, true, false, false, true, V_LUT4_I8_AVX2, true, true},
    [V_LUT4_I8_AVX2] = {bl_sign_avx2_lut_i8, true, false, false, false, V_I8_REF, true, true},
};
_Static_assert(sizeof variants / sizeof variants[0] == V_COUNT, "one impl per variant");
_Static_assert(sizeof impls / sizeof impls[0] == V_COUNT, "one impl per variant");

const bl_sign_variant *bl_sign_variants(int *count) {
    *count = V_COUNT;
    return variants;
}

typedef struct {
    bl_sign_range_fn fn;
    const bl_sign_job *job;
    int64_t units;
} sign_call;

static void sign_call_run(void *call, int64_t lo, int64_t hi) {
    const sign_call *c = call;
    c->fn(c->job, lo, hi);
}

/* ---- the table variants across threads ----
 * A table variant builds, in every call, the lookup tables of all the columns (rows, transposed)
 * it reads, chunk by chunk in L1. Split into the pool's usual 4 ranges per thread it rebuilt them
 * 8 times per product on 2 threads; tables built once per product by the calling thread and read
 * by the others cost more than that on this Zen 5 machine (every table line moved between the
 * cores twice per product: a 1024×2048 GEMV took 13.7 µs on two threads against 11.1 on one; a
 * 2048×5632 product at T = 64, 2198 µs against 2467). So these variants are split statically,
 * one contiguous range per thread, and each thread builds its own tables: 7.2 µs and 1513 µs.
 * The cost is the load balancing of bl_pool_for on a machine shared with other work. */
/* Table products split across threads from this many sign·input products: a 256×2048 GEMV
 * (2^19) took 3.0 µs on one thread and 4.6 µs on two; 2048×2048 (2^22) 18.6 and 10.9 µs. */
#define SIGN_PAR_MIN_WORK ((double)(1 << 21))

/* Thread ith of nth takes part ith of the units: one call per thread, so a table variant builds
 * its tables once per thread, into its own L1. */
static void sign_call_static(void *call, int ith, int nth) {
    const sign_call *c = call;
    int64_t lo, hi;
    bl_split_range(c->units, ith, nth, &lo, &hi);
    if (lo < hi) c->fn(c->job, lo, hi);
}

/* The implementation variant k runs as for S on this CPU: its fallback where packing, GFNI or
 * VBMI/VNNI is missing, and that one's in turn (the AVX-512 int8 tables without VBMI/VNNI run the
 * AVX2 ones, which without packing run the specification). */
static const variant_impl *resolve(int k, const bl_signmat *S) {
    const variant_impl *v = &impls[k];
    while (v->fallback >= 0 && (!S->packed || (v->needs_gfni && !bl_cpu_has_gfni()) ||
                                (v->needs_vbmi && !bl_cpu_has_vbmi_vnni())))
        v = &impls[v->fallback];
    return v;
}

/* bl_sign_variant_run with the scalings of a variant that fuses them (g, h NULL otherwise). */
static void variant_run(int k, const bl_signmat *S, const float *in, const float *g,
                        const float *h, int64_t T, float *out, const bl_exec *ex) {
    if (k < 0 || k >= V_COUNT) return;
    const bool tr = variants[k].transposed;
    const int64_t m = S->m, n = S->n, out_len = tr ? n : m, in_len = tr ? m : n;
    if (out_len <= 0 || T <= 0) return;
    if (in_len <= 0) { /* an empty sum */
        memset(out, 0, (size_t)(T * out_len) * sizeof *out);
        if (h) /* as the separate scaling would: 0·h */
            for (int64_t t = 0; t < T; t++)
                for (int64_t i = 0; i < out_len; i++) out[t * out_len + i] *= h[i];
        return;
    }
    const variant_impl *v = resolve(k, S);
    if (!v->fn) {
        if (variants[v - impls].tables == BL_TABLES_I8) bl_sign_matmul_i8_ref(S, in, T, out);
        else if (tr) bl_sign_matmul_t_ref(S, in, T, out);
        else bl_sign_matmul_ref(S, in, T, out);
        return;
    }
    const int64_t units = tr ? (n + BL_SIGN_ZUNIT - 1) / BL_SIGN_ZUNIT : (m + BL_SB_ROWS - 1) / BL_SB_ROWS;
    const double work = (double)m * (double)n * (double)T;
    bl_sign_job job = {S, v->use_packed ? S->packed : NULL, in, T, out, NULL, g, h};
    sign_call call = {v->fn, &job, units};
    if (v->own_tables) {
        if (work >= SIGN_PAR_MIN_WORK) bl_pool_run(exec_pool(ex), sign_call_static, &call);
        else v->fn(&job, 0, units);
        return;
    }
    if (!v->needs_tot) {
        split(exec_pool(ex), work, units, sign_call_run, &call);
        return;
    }
    /* y = Σx − 2·Σ_selected x: the sums of each input row, in index order, once per token */
    float tot[TOT_TILE];
    for (int64_t t0 = 0; t0 < T; t0 += TOT_TILE) {
        const int64_t tt = T - t0 < TOT_TILE ? T - t0 : TOT_TILE;
        for (int64_t t = 0; t < tt; t++) {
            const float *r = in + (t0 + t) * in_len;
            float a = 0.0f;
            for (int64_t i = 0; i < in_len; i++) a += r[i];
            tot[t] = a;
        }
        job.in = in + t0 * in_len;
        job.out = out + t0 * out_len;
        job.T = tt;
        job.tot = tot;
        split(exec_pool(ex), work * (double)tt / (double)T, units, sign_call_run, &call);
    }
}

void bl_sign_variant_run(int k, const bl_signmat *S, const float *in, int64_t T, float *out,
                         const bl_exec *ex) {
    variant_run(k, S, in, NULL, NULL, T, out, ex);
}

/* The variant bl_sign_matmul runs under ex. */
static int matmul_variant(const bl_exec *ex) {
    const bl_isa isa = exec_isa(ex);
    if (ex && ex->tables == BL_TABLES_I8)
        return isa == BL_ISA_AVX512 ? V_LUT4_I8 : isa == BL_ISA_AVX2 ? V_LUT4_I8_AVX2 : V_I8_REF;
    return isa == BL_ISA_AVX512 ? V_LUT4 : isa == BL_ISA_AVX2 ? V_LUT3 : V_REF;
}

void bl_sign_matmul(const bl_signmat *S, const float *X, int64_t T, float *Y, const bl_exec *ex) {
    variant_run(matmul_variant(ex), S, X, NULL, NULL, T, Y, ex);
}

bool bl_sign_fuses_scales(const bl_signmat *S, const bl_exec *ex) {
    const variant_impl *v = resolve(matmul_variant(ex), S);
    return v->fn && v->fuses_scales;
}

bool bl_sign_matmul_scaled(const bl_signmat *S, const float *X, const float *g, int64_t T,
                           const float *h, float *Y, const bl_exec *ex) {
    if (!bl_sign_fuses_scales(S, ex)) return false;
    variant_run(matmul_variant(ex), S, X, g, h, T, Y, ex);
    return true;
}

void bl_sign_matmul_t(const bl_signmat *S, const float *V, int64_t T, float *Z,
                      const bl_exec *ex) {
    const bl_isa isa = exec_isa(ex);
    bl_sign_variant_run(isa == BL_ISA_AVX512 ? V_LUT4_T : isa == BL_ISA_AVX2 ? V_MASK_T2 : V_REF_T,
                        S, V, T, Z, ex);
}

const char *bl_sign_tables_name(bl_sign_tables t) { return t == BL_TABLES_I8 ? "i8" : "f32"; }

bool bl_sign_tables_from_name(const char *name, bl_sign_tables *out) {
    if (!name) return false;
    if (strcmp(name, "f32") == 0) *out = BL_TABLES_F32;
    else if (strcmp(name, "i8") == 0) *out = BL_TABLES_I8;
    else return false;
    return true;
}

/* AVX-512 runs the VBMI/VNNI kernel where the CPU has both, else the AVX2 one (resolve). */
bool bl_sign_i8_native(bl_isa isa) { return bl_isa_clamp(isa) >= BL_ISA_AVX2; }

/* ---- bl_signmat ---- */

void bl_signmat_init(bl_signmat *S, int64_t m, int64_t n, const uint8_t *bits) {
    S->m = m;
    S->n = n;
    S->bits = bits;
    S->packed = NULL;
    S->packed_bytes = 0;
}

size_t bl_signmat_packed_bytes(int64_t m, int64_t n) {
    if (m <= 0 || n <= 0) return 0;
    const bl_sb_geom g = bl_sb_geometry(m, n);
    size_t bytes;
    if (bl_mul_overflows((size_t)g.blocks, (size_t)g.words, &bytes) ||
        bl_mul_overflows(bytes, BL_SB_ROWS * sizeof(uint32_t), &bytes))
        return SIZE_MAX;
    return bytes;
}

typedef struct {
    const bl_signmat *S;
    uint32_t *dst;
} pack_call;

static void pack_run(void *call, int64_t lo, int64_t hi) {
    const pack_call *c = call;
    bl_sb_pack_blocks(c->S->m, c->S->n, c->S->bits, c->dst, lo, hi);
}

bl_status bl_signmat_prepare(bl_signmat *S, bl_isa isa, bl_pool *pool, bl_err *err) {
    if (S->m < 0 || S->n < 0)
        return bl_fail(err, BL_ERR_ARG, "sign matrix: bad shape %lld x %lld", (long long)S->m,
                       (long long)S->n);
    if (!S->bits && S->m > 0 && S->n > 0)
        return bl_fail(err, BL_ERR_ARG, "sign matrix %lld x %lld: no bits", (long long)S->m,
                       (long long)S->n);
    /* The reference reads the canonical bits; the AVX2 and AVX-512 kernels share one layout. */
    if (bl_isa_clamp(isa) == BL_ISA_REF || S->packed || S->m == 0 || S->n == 0) return BL_OK;
    const size_t bytes = bl_signmat_packed_bytes(S->m, S->n);
    if (bytes == SIZE_MAX)
        return bl_fail(err, BL_ERR_NOMEM, "sign matrix %lld x %lld: packed size overflows",
                       (long long)S->m, (long long)S->n);
    uint32_t *p = bl_aligned_alloc(bytes);
    if (!p)
        return bl_fail(err, BL_ERR_NOMEM, "sign matrix %lld x %lld: cannot allocate %zu bytes",
                       (long long)S->m, (long long)S->n, bytes);
    pack_call call = {S, p};
    const double work = S->m * S->n >= PACK_PAR_MIN_BITS ? (double)PAR_MIN_WORK : 0.0;
    split(pool, work, bl_sb_geometry(S->m, S->n).blocks, pack_run, &call);
    S->packed = p;
    S->packed_bytes = bytes;
    return BL_OK;
}

void bl_signmat_release(bl_signmat *S) {
    bl_aligned_free(S->packed);
    S->packed = NULL;
    S->packed_bytes = 0;
}

/* ---- dense products (16-bit and f32 weights) ---- */

typedef struct {
    void (*fn)(const bl_half_job *j, int64_t u0, int64_t u1);
    const bl_half_job *job;
} half_call;

static void half_call_run(void *call, int64_t lo, int64_t hi) {
    const half_call *c = call;
    c->fn(c->job, lo, hi);
}

static void dense_matmul(int kind, const void *W, int64_t m, int64_t n, const float *X, int64_t T,
                         float *Y, const bl_exec *ex) {
    if (m <= 0 || T <= 0) return;
    const bl_half_job job = {kind, W, m, n, X, T, Y};
    half_call call = {exec_isa(ex) == BL_ISA_AVX512 ? bl_half_avx512 : bl_half_avx2, &job};
    const int64_t units = (m + BL_HALF_ROW_GROUP - 1) / BL_HALF_ROW_GROUP;
    split(exec_pool(ex), (double)m * (double)n * (double)T, units, half_call_run, &call);
}

void bl_half_matmul(bl_dtype dt, const uint16_t *W, int64_t m, int64_t n, const float *X,
                    int64_t T, float *Y, const bl_exec *ex) {
    if (exec_isa(ex) == BL_ISA_REF) bl_half_matmul_ref(dt, W, m, n, X, T, Y);
    else dense_matmul(dt == BL_DT_BF16 ? BL_WK_BF16 : BL_WK_F16, W, m, n, X, T, Y, ex);
}

void bl_f32_matmul(const float *W, int64_t m, int64_t n, const float *X, int64_t T, float *Y,
                   const bl_exec *ex) {
    if (exec_isa(ex) == BL_ISA_REF) bl_f32_matmul_ref(W, m, n, X, T, Y);
    else dense_matmul(BL_WK_F32, W, m, n, X, T, Y, ex);
}

void bl_half_to_f32(bl_dtype dt, const uint16_t *src, float *dst, size_t count) {
    switch (bl_default_isa()) {
    case BL_ISA_AVX512: bl_half_to_f32_avx512(dt, src, dst, count); return;
    case BL_ISA_AVX2: bl_half_to_f32_avx2(dt, src, dst, count); return;
    default: break;
    }
    bl_half_to_f32_ref(dt, src, dst, count);
}

void bl_f32_to_f16_n(const float *src, uint16_t *dst, size_t count) {
    switch (bl_default_isa()) {
    case BL_ISA_AVX512: bl_f32_to_f16_n_avx512(src, dst, count); return;
    case BL_ISA_AVX2: bl_f32_to_f16_n_avx2(src, dst, count); return;
    default: break;
    }
    bl_f32_to_f16_n_ref(src, dst, count);
}

/* ---- group-quantized products (qsym) ---- */

bool bl_qmat_simd_ok(const bl_qmat *Q, const bl_exec *ex) {
    return exec_isa(ex) >= BL_ISA_AVX2 && (Q->bits == 4 || Q->bits == 8) && Q->group > 0 &&
           Q->group % 16 == 0;
}

typedef struct {
    void (*fn)(const bl_qmat_job *j, int64_t u0, int64_t u1);
    const bl_qmat_job *job;
} qmat_call;

static void qmat_run(void *call, int64_t lo, int64_t hi) {
    const qmat_call *c = call;
    c->fn(c->job, lo, hi);
}

void bl_qmat_matmul(const bl_qmat *Q, const float *X, int64_t T, float *Y, const bl_exec *ex) {
    if (Q->m <= 0 || T <= 0) return;
    if (!bl_qmat_simd_ok(Q, ex)) { /* a contract breach: still the right answer */
        bl_qmat_matmul_ref(Q, X, T, Y);
        return;
    }
    const bl_qmat_job job = {Q, X, T, Y};
    qmat_call call = {exec_isa(ex) == BL_ISA_AVX512 ? bl_qmat_avx512 : bl_qmat_avx2, &job};
    split(exec_pool(ex), (double)Q->m * (double)Q->n * (double)T,
          (Q->m + BL_QMAT_ROWS - 1) / BL_QMAT_ROWS, qmat_run, &call);
}

/* BL_TABLES_I8: the inputs rounded once on the calling thread, the rows across the pool. The
 * AVX-512 kernel needs VNNI; an AVX-512 CPU without it runs the AVX2 kernel (the same bits). */

bool bl_qmat_i8_native(bl_isa isa) { return bl_isa_clamp(isa) >= BL_ISA_AVX2; }

typedef struct {
    void (*fn)(const bl_qmat_i8_job *j, int64_t u0, int64_t u1);
    const bl_qmat_i8_job *job;
} qmat_i8_call;

static void qmat_i8_run(void *call, int64_t lo, int64_t hi) {
    const qmat_i8_call *c = call;
    c->fn(c->job, lo, hi);
}

void bl_qmat_matmul_i8(const bl_qmat *Q, const float *X, int64_t T, float *Y, void *work,
                       const bl_exec *ex) {
    if (Q->m <= 0 || T <= 0) return;
    if (!bl_qmat_i8_ok(Q)) { /* a contract breach: the f32 product, still a right answer */
        bl_qmat_matmul(Q, X, T, Y, ex);
        return;
    }
    if (!bl_qmat_i8_native(exec_isa(ex))) {
        bl_qmat_matmul_i8_ref(Q, X, T, Y, work);
        return;
    }
    bl_qmat_i8_prepare(Q, X, T, work);
    const bl_qmat_i8_job job = {Q, T, work, Y};
    qmat_i8_call call = {exec_isa(ex) == BL_ISA_AVX512 && bl_cpu_has_vnni() ? bl_qmat_i8_avx512
                                                                            : bl_qmat_i8_avx2,
                         &job};
    split(exec_pool(ex), (double)Q->m * (double)Q->n * (double)T,
          (Q->m + BL_QMAT_ROWS - 1) / BL_QMAT_ROWS, qmat_i8_run, &call);
}

/* ---- element-wise and attention steps ---- */

void bl_silu_mul(float *h, const float *u, int64_t n, bl_isa isa) {
    switch (bl_isa_clamp(isa)) {
    case BL_ISA_AVX512: bl_silu_mul_avx512(h, u, n); return;
    case BL_ISA_AVX2: bl_silu_mul_avx2(h, u, n); return;
    default: bl_silu_mul_ref(h, u, n); return;
    }
}

void bl_softmax(float *x, int64_t n, bl_isa isa) {
    switch (bl_isa_clamp(isa)) {
    case BL_ISA_AVX512: bl_softmax_avx512(x, n); return;
    case BL_ISA_AVX2: bl_softmax_avx2(x, n); return;
    default: bl_softmax_ref(x, n); return;
    }
}

bool bl_attend_f16(const float *q, int64_t q_stride, int G, const uint16_t *K, const uint16_t *V,
                   int64_t ld, int hd, int n, float scale, float *P, float *out,
                   int64_t out_stride, bl_isa isa) {
    switch (bl_isa_clamp(isa)) {
    case BL_ISA_AVX512:
        bl_attend_f16_avx512(q, q_stride, G, K, V, ld, hd, n, scale, P, out, out_stride);
        return true;
    case BL_ISA_AVX2:
        bl_attend_f16_avx2(q, q_stride, G, K, V, ld, hd, n, scale, P, out, out_stride);
        return true;
    default: return false;
    }
}

void bl_kv_q8_quantize(const float *x, int n, int8_t *codes, float *scales) {
    switch (bl_default_isa()) {
    case BL_ISA_AVX512: bl_kv_q8_quantize_avx512(x, n, codes, scales); return;
    case BL_ISA_AVX2: bl_kv_q8_quantize_avx2(x, n, codes, scales); return;
    default: bl_kv_q8_quantize_ref(x, n, codes, scales); return;
    }
}

bool bl_attend_q8(const float *q, int64_t q_stride, int G, const int8_t *K, const float *Ks,
                  const int8_t *V, const float *Vs, int64_t ld, int64_t lds, int hd, int n,
                  float scale, float *P, float *out, int64_t out_stride, bl_isa isa) {
    const bl_kv_view k = {K, Ks, ld, lds, BL_KV_Q8}, v = {V, Vs, ld, lds, BL_KV_Q8};
    switch (bl_isa_clamp(isa)) {
    case BL_ISA_AVX512:
        bl_attend_q8_avx512(q, q_stride, G, k, v, hd, n, scale, P, out, out_stride);
        return true;
    case BL_ISA_AVX2:
        bl_attend_q8_avx2(q, q_stride, G, k, v, hd, n, scale, P, out, out_stride);
        return true;
    default: return false;
    }
}

void bl_attend(const float *q, int64_t q_stride, int G, const float *K, const float *V,
               int64_t ld, int hd, int n, float scale, float *P, float *out, int64_t out_stride,
               bl_isa isa) {
    switch (bl_isa_clamp(isa)) {
    case BL_ISA_AVX512:
        bl_attend_avx512(q, q_stride, G, K, V, ld, hd, n, scale, P, out, out_stride);
        return;
    case BL_ISA_AVX2:
        bl_attend_avx2(q, q_stride, G, K, V, ld, hd, n, scale, P, out, out_stride);
        return;
    default: bl_attend_ref(q, q_stride, G, K, V, ld, hd, n, scale, P, out, out_stride); return;
    }
}
