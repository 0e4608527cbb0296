/* Packed sign-matrix kernels: the inference primitive of every 1-bit format.
 *
 * S is m×n with entries ±1 in the canonical packed layout of format.h. The scalar reference
 * (src/kernels/ref) is the specification; AVX2 / AVX-512 versions (src/kernels/x86) are chosen at
 * run time from the CPU's features, and BITLLM_ISA=ref|avx2|avx512 in the environment forces a
 * level (tests use bl_kernels_set_isa). Kernels never allocate; threads split output rows. */
#ifndef BITLLM_KERNELS_H
#define BITLLM_KERNELS_H

#include "bitllm/core.h"
#include "bitllm/tensor.h"

BL_API_BEGIN

typedef enum { BL_ISA_REF = 0, BL_ISA_AVX2 = 1, BL_ISA_AVX512 = 2 } bl_isa;

bl_isa bl_cpu_best_isa(void);           /* what this CPU supports */
bl_isa bl_kernels_isa(void);            /* the level in use */
/* Forces a level (clamped to what the CPU supports); returns the level actually set. */
bl_isa bl_kernels_set_isa(bl_isa isa);
const char *bl_isa_name(bl_isa isa);

/* A sign matrix ready for the kernels. `bits` is the canonical layout (not owned). `packed` is an
 * optional kernel-specific repacking made at load time by bl_signmat_prepare (owned). */
typedef struct {
    int64_t m, n;
    const uint8_t *bits;
    void *packed;
    size_t packed_bytes;
    bl_isa packed_isa;
} bl_signmat;

void bl_signmat_init(bl_signmat *S, int64_t m, int64_t n, const uint8_t *bits);
/* Repacks for the current ISA if that kernel wants another layout (no-op otherwise). */
bl_status bl_signmat_prepare(bl_signmat *S, bl_err *err);
void bl_signmat_release(bl_signmat *S);

/* Y (T×m) = X (T×n) · Sᵀ, i.e. Y[t][i] = Σ_j S[i][j]·X[t][j]. */
void bl_sign_matmul(const bl_signmat *S, const float *X, int64_t T, float *Y);
/* Z (T×n) = V (T×m) · S, i.e. Z[t][j] = Σ_i S[i][j]·V[t][i] (for backward passes). */
void bl_sign_matmul_t(const bl_signmat *S, const float *V, int64_t T, float *Z);

/* The scalar references, always available (the specification). */
void bl_sign_matmul_ref(const bl_signmat *S, const float *X, int64_t T, float *Y);
void bl_sign_matmul_t_ref(const bl_signmat *S, const float *V, int64_t T, float *Z);

/* Dense 16-bit weights, the FP baseline's products: W is m×n row-major F16 or BF16 (dt), X is T×n
 * f32, Y (T×m) = X·Wᵀ computed in f32 without a converted copy of W. Memory-bound at T = 1 like
 * the sign kernels, so the two are compared on equal terms. Threads split rows of W; results do
 * not depend on the thread count. */
void bl_half_matmul(bl_dtype dt, const uint16_t *W, int64_t m, int64_t n, const float *X,
                    int64_t T, float *Y);
/* The same product over f32 weights (W m×n row-major f32), with the same tiling and summation
 * order: every output row depends only on its own input row, whatever T is, so a token gives
 * bit-identical outputs alone or stacked with others (OpenBLAS's gemv and gemm, which the f32
 * layers used before, sum in different orders). */
void bl_f32_matmul(const float *W, int64_t m, int64_t n, const float *X, int64_t T, float *Y);
void bl_f32_matmul_ref(const float *W, int64_t m, int64_t n, const float *X, int64_t T,
                       float *Y);
/* dst[i] = the f32 value of src[i] (exact: every F16 and BF16 value is an f32). */
void bl_half_to_f32(bl_dtype dt, const uint16_t *src, float *dst, size_t count);
/* The scalar references (double accumulation in column order; bl_f16_to_f32/bl_bf16_to_f32). */
void bl_half_matmul_ref(bl_dtype dt, const uint16_t *W, int64_t m, int64_t n, const float *X,
                        int64_t T, float *Y);
void bl_half_to_f32_ref(bl_dtype dt, const uint16_t *src, float *dst, size_t count);

BL_API_END
#endif
