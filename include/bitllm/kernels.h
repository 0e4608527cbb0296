/* Packed sign-matrix kernels: the inference primitive of every 1-bit format, and the dense 16-bit
 * (F16 / BF16) products of the FP baseline.
 *
 * S is m×n with entries ±1 in the canonical packed layout of format.h. The scalar reference
 * (src/kernels/ref) is the specification; AVX2 / AVX-512 versions (src/kernels/x86) run at the
 * ISA level the caller names in a bl_exec, clamped to what the CPU supports. Kernels never
 * allocate. Threads (the bl_exec's pool) split output rows — or output columns for the transposed
 * product — in fixed units, so results do not depend on the thread count, bit for bit. */
#ifndef BITLLM_KERNELS_H
#define BITLLM_KERNELS_H

#include "bitllm/core.h"
#include "bitllm/pool.h"
#include "bitllm/tensor.h"

BL_API_BEGIN

/* BL_ISA_AUTO (0, what a zero-initialized option or bl_exec holds) means bl_default_isa(). */
typedef enum { BL_ISA_AUTO = 0, BL_ISA_REF = 1, BL_ISA_AVX2 = 2, BL_ISA_AVX512 = 3 } bl_isa;

bl_isa bl_cpu_best_isa(void);     /* what this CPU supports */
/* isa lowered to what this CPU supports; BL_ISA_AUTO becomes bl_default_isa(). */
bl_isa bl_isa_clamp(bl_isa isa);
/* The level used when a caller does not name one: BITLLM_ISA=ref|avx2|avx512 from the environment
 * (clamped to the CPU) if set, else the best level of the CPU. Read once; never changes. */
bl_isa bl_default_isa(void);
const char *bl_isa_name(bl_isa isa);
bool bl_isa_from_name(const char *name, bl_isa *out); /* "auto", "ref", "avx2", "avx512" */

/* How the sign products (bl_sign_matmul) sum. BL_TABLES_F32, the default: every sign·input
 * product enters an f32 sum (error ~1e-7·Σ|x|). BL_TABLES_I8: T-MAC-style int8 lookup tables —
 * the 16 signed sums of every 4 inputs are rounded to int8 codes, each 32 columns with its own
 * step (an integer multiple, 1..255, of one unit per BL_SIGN_I8_BLOCK columns), and summed
 * exactly in int32 over the block (bl_sign_matmul_i8_ref is the specification); the error is at
 * most ~4·(max|group sum|/127 + unit) per 32 columns, and with AVX512-VBMI and VNNI the kernel
 * does a sixth of the f32 tables' work per token (AVX2: under half of the AVX2 f32 tables'
 * instructions), so batched decoding gains more. Either way a token's output does not depend on
 * the batch, the thread count or the kernel. The transposed products (training) always use
 * f32. */
typedef enum { BL_TABLES_F32 = 0, BL_TABLES_I8 = 1 } bl_sign_tables;
#define BL_SIGN_I8_BLOCK 512 /* columns of BL_TABLES_I8 that share one unit */
const char *bl_sign_tables_name(bl_sign_tables t);
bool bl_sign_tables_from_name(const char *name, bl_sign_tables *out); /* "f32", "i8" */
/* Whether BL_TABLES_I8 has its SIMD kernel at this level on this CPU: AVX2 and up (AVX-512 without
 * VBMI/VNNI runs the AVX2 kernel); else the scalar specification runs: correct, but far slower. */
bool bl_sign_i8_native(bl_isa isa);

/* Where and how kernels run. pool NULL: the calling thread only. A NULL bl_exec pointer means
 * {NULL, BL_ISA_AUTO, BL_TABLES_F32}. */
typedef struct {
    bl_pool *pool;
    bl_isa isa;
    bl_sign_tables tables;
} bl_exec;

/* A sign matrix ready for the kernels. `bits` is the canonical layout (not owned). `packed` is an
 * optional repacking for the SIMD kernels made by bl_signmat_prepare (owned); the AVX2 and
 * AVX-512 kernels share it. */
typedef struct {
    int64_t m, n;
    const uint8_t *bits;
    void *packed;
    size_t packed_bytes;
} bl_signmat;

void bl_signmat_init(bl_signmat *S, int64_t m, int64_t n, const uint8_t *bits);
/* Repacks for the SIMD kernels when isa (clamped) is AVX2 or AVX-512; a no-op for the reference
 * or when already packed. Threads of the pool (may be NULL) split the work. The packing is a
 * copy: whoever changes the bits afterwards must release and prepare again. */
bl_status bl_signmat_prepare(bl_signmat *S, bl_isa isa, bl_pool *pool, bl_err *err);
void bl_signmat_release(bl_signmat *S);
/* Bytes of the packed copy of an m×n matrix (what bl_signmat_prepare allocates). */
size_t bl_signmat_packed_bytes(int64_t m, int64_t n);

/* Y (T×m) = X (T×n) · Sᵀ, i.e. Y[t][i] = Σ_j S[i][j]·X[t][j]. At AVX-512 every batch size uses
 * the same summation order, so a token's output does not depend on T either. */
void bl_sign_matmul(const bl_signmat *S, const float *X, int64_t T, float *Y, const bl_exec *ex);
/* Y[t][i] = h[i]·Σ_j S[i][j]·(X[t][j]·g[j]) (g or h NULL: 1), bit for bit the three steps
 * u = X⊙g, bl_sign_matmul(u), Y⊙h, with the scalings done inside the product (each thread
 * scales the inputs it reads and the outputs it writes: no passes of their own, no barrier
 * between them) — where the kernel bl_sign_matmul would run for S under ex does that
 * (bl_sign_fuses_scales). Elsewhere it computes nothing and returns false: the caller makes the
 * three steps itself (formats: bl_qc_sign_scaled). */
bool bl_sign_fuses_scales(const bl_signmat *S, const bl_exec *ex);
bool bl_sign_matmul_scaled(const bl_signmat *S, const float *X, const float *g, int64_t T,
                           const float *h, float *Y, const bl_exec *ex);
/* Z (T×n) = V (T×m) · S, i.e. Z[t][j] = Σ_i S[i][j]·V[t][i] (for backward passes). */
void bl_sign_matmul_t(const bl_signmat *S, const float *V, int64_t T, float *Z,
                      const bl_exec *ex);

/* The scalar references, always available (the specification; single-threaded). */
void bl_sign_matmul_ref(const bl_signmat *S, const float *X, int64_t T, float *Y);
void bl_sign_matmul_t_ref(const bl_signmat *S, const float *V, int64_t T, float *Z);
/* Y = X·Sᵀ with BL_TABLES_I8 numerics (the definition is at the function, kernels/ref). */
void bl_sign_matmul_i8_ref(const bl_signmat *S, const float *X, int64_t T, float *Y);

/* Every compiled variant, for tests and benchmarks. The first variant of each (isa, transposed)
 * pair is the one bl_sign_matmul(_t) uses at that level; `packed` says whether it needs a
 * prepared matrix to run at full speed (unprepared ones fall back to a gather form). */
typedef struct {
    const char *name;
    bl_isa isa;
    bool transposed;
    bool packed;
    bl_sign_tables tables; /* its numerics (BL_TABLES_I8: bl_sign_matmul_i8_ref's) */
    const char *what;      /* one line describing the method */
} bl_sign_variant;
const bl_sign_variant *bl_sign_variants(int *count);
/* Runs variant k (an index into bl_sign_variants) with the threads of ex (its isa is ignored). */
void bl_sign_variant_run(int k, const bl_signmat *S, const float *in, int64_t T, float *out,
                         const bl_exec *ex);

/* Dense 16-bit weights, the FP baseline's products: W is m×n row-major F16 or BF16 (dt), X is T×n
 * f32, Y (T×m) = X·Wᵀ computed in f32 without a converted copy of W. Memory-bound at T = 1 like
 * the sign kernels, so the two are compared on equal terms. */
void bl_half_matmul(bl_dtype dt, const uint16_t *W, int64_t m, int64_t n, const float *X,
                    int64_t T, float *Y, const bl_exec *ex);
/* The same product over f32 weights (W m×n row-major f32), with the same tiling and summation
 * order: every output row depends only on its own input row, whatever T is, so a token gives
 * bit-identical outputs alone or stacked with others (OpenBLAS's gemv and gemm, which the f32
 * layers used before, sum in different orders). */
void bl_f32_matmul(const float *W, int64_t m, int64_t n, const float *X, int64_t T, float *Y,
                   const bl_exec *ex);
void bl_f32_matmul_ref(const float *W, int64_t m, int64_t n, const float *X, int64_t T,
                       float *Y);
/* dst[i] = the f32 value of src[i] (exact: every F16 and BF16 value is an f32). */
void bl_half_to_f32(bl_dtype dt, const uint16_t *src, float *dst, size_t count);
/* dst[i] = bl_f32_to_f16(src[i]) (round to nearest even; overflow to ±inf): the same bits at every
 * level for every non-NaN input (a NaN stays a NaN, its payload may differ). */
void bl_f32_to_f16_n(const float *src, uint16_t *dst, size_t count);
void bl_f32_to_f16_n_ref(const float *src, uint16_t *dst, size_t count);
/* The scalar references (double accumulation in column order; bl_f16_to_f32/bl_bf16_to_f32). */
void bl_half_matmul_ref(bl_dtype dt, const uint16_t *W, int64_t m, int64_t n, const float *X,
                        int64_t T, float *Y);
void bl_half_to_f32_ref(bl_dtype dt, const uint16_t *src, float *dst, size_t count);

/* Group-quantized symmetric weights (the qsym format: q8_0, q4_0, ...): row i of Ŵ holds n codes
 * of `bits` bits packed LSB first (code j at bit j·bits of the row; 4 bits: two per byte, low
 * nibble first), code c meaning Ŵ[i][j] = d[i][j/group]·(c − 2^(bits−1)). Not owned. */
typedef struct {
    int64_t m, n;
    int bits, group;
    const uint8_t *qs; /* m rows of bl_qmat_row_bytes(n, bits) bytes */
    const float *d;    /* m × ceil(n/group) FP16-representable scales */
} bl_qmat;

static inline int64_t bl_qmat_row_bytes(int64_t n, int bits) { return (n * bits + 7) / 8; }
/* Ŵ[i][j] (the one dequantization formula; exact in f32). Inline: the generic forward of layouts
 * without a SIMD kernel calls it per weight. */
static inline float bl_qmat_weight(const bl_qmat *Q, int64_t i, int64_t j) {
    const uint8_t *row = Q->qs + i * bl_qmat_row_bytes(Q->n, Q->bits);
    const int64_t bit = j * Q->bits;
    unsigned v = row[bit >> 3];
    if ((bit & 7) + Q->bits > 8) v |= (unsigned)row[(bit >> 3) + 1] << 8;
    const unsigned code = (v >> (bit & 7)) & ((1u << Q->bits) - 1u);
    const int64_t G = (Q->n + Q->group - 1) / Q->group;
    return Q->d[i * G + j / Q->group] * ((float)code - (float)(1 << (Q->bits - 1)));
}
/* Whether bl_qmat_matmul has a SIMD kernel for Q at the exec's ISA level (AVX2 or AVX-512, bits
 * 4 or 8, group a multiple of 16); other layouts and levels are the caller's to compute. */
bool bl_qmat_simd_ok(const bl_qmat *Q, const bl_exec *ex);
/* Y (T×m) = X (T×n) · Ŵᵀ with the SIMD kernel (the reference where bl_qmat_simd_ok fails): each token's outputs
 * are summed in an order that depends neither on T nor on the thread count (but on the level:
 * AVX2 and AVX-512 sum in different orders and may differ in the last bits). */
void bl_qmat_matmul(const bl_qmat *Q, const float *X, int64_t T, float *Y, const bl_exec *ex);
/* The scalar reference (double accumulation in column order; single-threaded). */
void bl_qmat_matmul_ref(const bl_qmat *Q, const float *X, int64_t T, float *Y);

/* BL_TABLES_I8 for group-quantized matrices (q8_0 / q4_0 heads): the inputs of every group of
 * the matrix are rounded to int8 with one scale per group (dx = max|x|/127, as llama.cpp's q8_0
 * activations), each group's codes dotted with them exactly in int32 (VPDPBUSD; on AVX2
 * VPMADDUBSW / VPMADDWD, kept exact), and the integer sums scaled by d·dx into f32.
 * bl_qmat_matmul_i8_ref is the specification, bit for bit at every level; the error against the
 * f32 product is at most Σ_j |ŵ_j|·dx_g/2 (half a step of each input) plus f32 roundings. A token's outputs depend neither on the batch nor on the thread count. Layouts: bits
 * 4 or 8, groups a multiple of 32 (bl_qmat_i8_ok). work: bl_qmat_i8_work_bytes(n, T) bytes
 * (the quantized inputs; kernels never allocate). */
bool bl_qmat_i8_ok(const bl_qmat *Q);
size_t bl_qmat_i8_work_bytes(int64_t n, int64_t T);
void bl_qmat_matmul_i8(const bl_qmat *Q, const float *X, int64_t T, float *Y, void *work,
                       const bl_exec *ex);
void bl_qmat_matmul_i8_ref(const bl_qmat *Q, const float *X, int64_t T, float *Y, void *work);
/* Whether bl_qmat_matmul_i8 has a SIMD kernel at this level on this CPU (AVX2 and up: the
 * AVX-512 VNNI kernel where the CPU has VNNI, else the AVX2 one, the same bits; at REF the
 * specification runs). */
bool bl_qmat_i8_native(bl_isa isa);

/* The element-wise and attention steps of a forward pass. The references (src/kernels/ref/
 * act_ref.c: f32 with libm's expf, loops the compiler may vectorise) are the specification and
 * run at the REF level; the AVX2 and AVX-512 versions (x86/act_avx2.c, x86/act_avx512.c) use one
 * polynomial exp within 1 ulp of the correctly rounded e^x (NaN in gives NaN out, overflow inf,
 * underflow 0) and sum in other fixed orders (8 and 16 lanes). Results depend only on the inputs
 * and the ISA level, never on the thread count. */
/* h[i] = silu(h[i])·u[i] = h[i] / (1 + e^(−h[i])) · u[i], i < n (the SwiGLU gate). */
void bl_silu_mul(float *h, const float *u, int64_t n, bl_isa isa);
void bl_silu_mul_ref(float *h, const float *u, int64_t n);
/* x[0..n) ← softmax(x): e^(x − max) / Σ, n ≥ 1. */
void bl_softmax(float *x, int64_t n, bl_isa isa);
void bl_softmax_ref(float *x, int64_t n);
/* Attention of G ≥ 1 queries over the same n ≥ 1 cached positions (a decode step; the query
 * heads of one KV head): for query g (row g of q, stride q_stride floats), row g of out (stride
 * out_stride) = Σ_k p_k·V_k with p = softmax(scale·q_g·K_kᵀ), K_k and V_k the rows k of K and V
 * (stride ld floats). P is scratch for G·n floats. A query's result does not depend on G (alone
 * or in any group, the same bits). */
void bl_attend(const float *q, int64_t q_stride, int G, const float *K, const float *V,
               int64_t ld, int hd, int n, float scale, float *P, float *out, int64_t out_stride,
               bl_isa isa);
/* bl_attend on an FP16 cache (K and V rows of FP16 values, stride ld), each value widened exactly
 * as it is read: the results of bl_attend on the widened values, bit for bit. Where the level
 * has no such kernel (the reference) it returns false and computes nothing; the caller widens. */
bool bl_attend_f16(const float *q, int64_t q_stride, int G, const uint16_t *K, const uint16_t *V,
                   int64_t ld, int hd, int n, float scale, float *P, float *out,
                   int64_t out_stride, bl_isa isa);
void bl_attend_ref(const float *q, int64_t q_stride, int G, const float *K, const float *V,
                   int64_t ld, int hd, int n, float scale, float *P, float *out,
                   int64_t out_stride);

/* The value types of a model's KV cache (--kv-cache): f32, FP16 (rounded to nearest) or BL_KV_Q8:
 * int8 codes in blocks of BL_KV_Q8_BLOCK values of a row (the last block of a row may be
 * shorter), each block with one f32 scale d = max|x| / 127 and codes c = x·(127 / max|x|)
 * rounded to nearest even, |c| ≤ 127 (a block of zeros: d = 0 and codes 0; a block holding a NaN
 * or Inf: d = NaN, so the value is not lost silently); a value reads back as the f32 product c·d.
 * 8 + 32/BL_KV_Q8_BLOCK = 9 bits per value against 16 (FP16) and 32. */
typedef enum { BL_KV_F32 = 0, BL_KV_F16 = 1, BL_KV_Q8 = 2 } bl_kv_type;
#define BL_KV_Q8_BLOCK 32
/* Bytes of one cached value of the type (an int8 row's scales are stored beside it). */
static inline int bl_kv_value_bytes(bl_kv_type t) {
    return t == BL_KV_F16 ? 2 : t == BL_KV_Q8 ? 1 : 4;
}
/* Scales per row of n values: ceil(n / BL_KV_Q8_BLOCK). */
static inline int bl_kv_q8_scales(int n) { return (n + BL_KV_Q8_BLOCK - 1) / BL_KV_Q8_BLOCK; }
/* One row of n values into codes[n] and scales[bl_kv_q8_scales(n)] (IEEE operations only: the
 * same bits at every level and on every CPU), and back (codes·scale, the f32 product). */
void bl_kv_q8_quantize(const float *x, int n, int8_t *codes, float *scales);
void bl_kv_q8_quantize_ref(const float *x, int n, int8_t *codes, float *scales);
void bl_kv_q8_dequantize(const int8_t *codes, const float *scales, int n, float *x);
/* bl_attend on an int8 cache: K and V rows of int8 codes (stride ld), their scales in rows of
 * bl_kv_q8_scales(hd) floats (stride lds), each value read as code·scale: the results of
 * bl_attend on those values, bit for bit. Where the level has no such kernel (the reference) it
 * returns false and computes nothing; the caller dequantizes. */
bool bl_attend_q8(const float *q, int64_t q_stride, int G, const int8_t *K, const float *Ks,
                  const int8_t *V, const float *Vs, int64_t ld, int64_t lds, int hd, int n,
                  float scale, float *P, float *out, int64_t out_stride, bl_isa isa);

BL_API_END
#endif
