/* Scalar reference for the group-quantized (qsym) product: the specification the AVX-512 kernel
 * is tested against. Each weight is dequantized with the one formula of bl_qmat (d·(c − 2^(b−1)),
 * exact in f32), each output accumulated in double in column order and rounded once. */
#include "bitllm/kernels.h"

void bl_qmat_matmul_ref(const bl_qmat *Q, const float *X, int64_t T, float *Y) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < Q->m; i++) {
            double acc = 0.0;
            for (int64_t j = 0; j < Q->n; j++)
                acc += (double)bl_qmat_weight(Q, i, j) * (double)X[t * Q->n + j];
            Y[t * Q->m + i] = (float)acc;
        }
}
