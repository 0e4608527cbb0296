/* Data-parallel distillation over MPI ranks (docs/distributed.md): after its micro-batches every
 * rank holds the gradient of its share of the step's sequences, already divided by the global
 * micro-batch count; the sum over ranks (a fixed-order allreduce, the same bits on every rank)
 * is the step's gradient, so every rank applies the same update to its copy of the model. */
#include "train/train_internal.h"

#include "bitllm/dist.h"

bl_status tr_dist_sum_grads(float *G, size_t n, double *ce, double *mse, bl_err *err) {
    const int N = bl_dist_size();
    if (N == 1) return BL_OK;
    bl_status s = bl_dist_allreduce_sum_f32(G, n, err);
    double loss[2] = {*ce, *mse};
    if (!s) s = bl_dist_allreduce_sum_f64(loss, 2, err);
    if (s) return bl_fail_context(err, s, "summing the gradients of %d ranks", N);
    *ce = loss[0] / N; /* each rank's value is the mean over its micro-batches */
    *mse = loss[1] / N;
    return BL_OK;
}
