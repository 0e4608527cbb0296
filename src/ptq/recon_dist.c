/* Block reconstruction and scale calibration over the ranks of an MPI job (docs/distributed.md):
 * which calibration sequences a rank holds and which of them each optimizer step uses, the sums
 * over ranks, and what rank 0 hands the others (its saved state). With one rank every call here
 * is the plain single-process behaviour. */
#include "ptq/recon_internal.h"

#include "bitllm/dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bl_status rc_shard_make(int64_t n_seq, int cap, rc_shard *sh, bl_err *err) {
    const int N = bl_dist_size(), r = bl_dist_rank();
    memset(sh, 0, sizeof *sh);
    if (cap < N)
        return bl_fail(err, BL_ERR_ARG, "a step of at most %d sequences (--recon-batch) cannot "
                       "give each of %d ranks one: raise --recon-batch to at least %d", cap, N, N);
    for (int B = cap - cap % N; B >= N; B -= N)
        if (n_seq % B == 0) {
            sh->B = B;
            break;
        }
    if (!sh->B)
        return bl_fail(err, BL_ERR_ARG, "%lld calibration sequences cannot be cut into steps of "
                       "at most %d sequences (--recon-batch) shared evenly by %d ranks: use a "
                       "multiple of %d sequences", (long long)n_seq, cap, N, N);
    sh->n_seq = n_seq;
    sh->b = sh->B / N;
    sh->n_loc = n_seq / N;
    sh->seq0 = (int64_t)r * sh->n_loc;
    return BL_OK;
}

bl_status rc_epoch_order(const rc_shard *sh, uint64_t seed, int64_t *order, bl_err *err) {
    const int64_t P = sh->n_seq / sh->B, g0 = sh->seq0 / P;
    int64_t *perm = malloc(sizeof(int64_t) * (size_t)P);
    if (!perm) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    for (int i = 0; i < sh->b; i++) {
        const int64_t g = g0 + i; /* its permutation depends on the group, not on the rank */
        rc_permutation(perm, P, seed ^ (0x632be59bd9b4e019ull * (uint64_t)(g + 1)));
        for (int64_t k = 0; k < P; k++) order[k * sh->b + i] = g * P + perm[k];
    }
    free(perm);
    return BL_OK;
}

bl_status rc_sum_f32(float *buf, size_t n, const char *what, bl_err *err) {
    if (bl_dist_size() == 1) return BL_OK;
    bl_status s = bl_dist_allreduce_sum_f32(buf, n, err);
    return s ? bl_fail_context(err, s, "summing %s over %d ranks", what, bl_dist_size()) : BL_OK;
}

bl_status rc_sum_f64(double *buf, size_t n, const char *what, bl_err *err) {
    if (bl_dist_size() == 1) return BL_OK;
    bl_status s = bl_dist_allreduce_sum_f64(buf, n, err);
    return s ? bl_fail_context(err, s, "summing %s over %d ranks", what, bl_dist_size()) : BL_OK;
}

bl_status rc_check_same_tokens(const int32_t *ids, int64_t n_seq, int T, bl_err *err) {
    if (bl_dist_size() == 1) return BL_OK;
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a of the ids' bytes */
    const uint8_t *p = (const uint8_t *)ids;
    for (size_t i = 0; i < sizeof(int32_t) * (size_t)n_seq * (size_t)T; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    uint64_t mine[3] = {(uint64_t)n_seq, (uint64_t)T, h}, root[3];
    memcpy(root, mine, sizeof root);
    bl_status s = bl_dist_bcast(root, sizeof root, 0, err);
    if (s) return bl_fail_context(err, s, "comparing the calibration tokens of the ranks");
    if (memcmp(root, mine, sizeof root) != 0)
        return bl_fail(err, BL_ERR_ARG, "rank %d holds other calibration tokens than rank 0 (%lld "
                       "sequences of %d tokens, hash %016llx, against %lld, %d, %016llx): every "
                       "rank must read the same --calib file", bl_dist_rank(), (long long)n_seq,
                       T, (unsigned long long)h, (long long)root[0], (int)root[1],
                       (unsigned long long)root[2]);
    return BL_OK;
}

bl_status rc_bcast_file(const char *path, uint8_t **data, size_t *n, bl_err *err) {
    *data = NULL;
    *n = 0;
    char *text = NULL;
    size_t len = 0;
    bl_status s = BL_OK;
    if (bl_dist_rank() == 0) s = bl_read_file(path, &text, &len, err);
    if (s) return s;
    uint64_t size = len;
    if (bl_dist_size() > 1) s = bl_dist_bcast(&size, sizeof size, 0, err);
    if (!s && bl_dist_rank() != 0 && !(text = malloc(size ? (size_t)size : 1)))
        s = bl_fail(err, BL_ERR_NOMEM, "out of memory for %llu bytes of %s",
                    (unsigned long long)size, path);
    if (!s && bl_dist_size() > 1) s = bl_dist_bcast(text, (size_t)size, 0, err);
    if (s) {
        free(text);
        return bl_fail_context(err, s, "receiving rank 0's %s", path);
    }
    *data = (uint8_t *)text;
    *n = (size_t)size;
    return BL_OK;
}
