/* The communication layer of a build without MPI: one rank. A launcher that starts several
 * copies of this binary is refused (each would run the whole job and write the same output). */
#include "bitllm/dist.h"

#include "dist/dist_internal.h"

bool bl_dist_built_with_mpi(void) { return false; }

bl_status bl_dist_init(int *argc, char ***argv, bl_err *err) {
    const int n = dist_launcher_size();
    if (n > 1 || n < 0)
        return bl_fail(err, BL_ERR_UNSUPPORTED, "started by an MPI launcher%s, but this bitllm "
                       "was built without MPI (install libopenmpi-dev and rebuild: make MPI=1)",
                       n > 1 ? " as several ranks" : "");
    return BL_OK;
}

void bl_dist_finalize(void) {}
void bl_dist_abort(int code) {}
int bl_dist_rank(void) { return 0; }
int bl_dist_size(void) { return 1; }
bl_status bl_dist_barrier(bl_err *err) { return BL_OK; }

bl_status bl_dist_bcast(void *buf, size_t n, int root, bl_err *err) {
    if (root != 0) return bl_fail(err, BL_ERR_ARG, "broadcast from rank %d of 1", root);
    return BL_OK;
}

bl_status bl_dist_allreduce_sum_f32(float *buf, size_t n, bl_err *err) { return BL_OK; }
bl_status bl_dist_allreduce_sum_f64(double *buf, size_t n, bl_err *err) { return BL_OK; }

bl_status bl_dist_gather_bytes(const void *buf, size_t n, void ***parts, size_t **sizes,
                               bl_err *err) {
    return dist_gather_self(buf, n, parts, sizes, err);
}

bl_dist_stats bl_dist_get_stats(void) { return (bl_dist_stats){0}; }
