/* Distributed runs: the one communication layer of bitllm (docs/distributed.md).
 *
 * Built with MPI (Open MPI; CMake finds it, or `make MPI=1`), the same binary runs alone or as
 * one of N ranks under `mpirun -np N`. It joins the MPI job only when a launcher started it
 * (OMPI_COMM_WORLD_SIZE, PMIX_RANK or PMI_SIZE in the environment); started plainly it never
 * touches MPI and behaves exactly as a build without it. A build without MPI implements the same
 * calls for one rank (rank 0 of 1: barriers and broadcasts do nothing, a gather returns the
 * caller's own buffer) and refuses to start under a launcher with more than one rank, which would
 * otherwise run N independent copies of one job.
 *
 * Only the calling thread talks to MPI. Every wait polls with a short sleep (so a rank waiting
 * for the others leaves its core to them) and gives up after BITLLM_DIST_TIMEOUT seconds
 * (environment; default 0 = no limit) with an error naming the rank it waited for. A rank that
 * dies makes mpirun end the whole job and name it; a rank that fails calls bl_dist_abort. */
#ifndef BITLLM_DIST_H
#define BITLLM_DIST_H

#include "bitllm/core.h"

BL_API_BEGIN

/* Whether this build can run under MPI. */
bool bl_dist_built_with_mpi(void);
/* Joins the MPI job when a launcher started this process (else one rank, no MPI). Call once,
 * before any other bl_dist_* call and before threads start. */
bl_status bl_dist_init(int *argc, char ***argv, bl_err *err);
/* Leaves the job (after a barrier-free MPI_Finalize); no-op without MPI. */
void bl_dist_finalize(void);
/* Ends the job after a failure on this rank: when every rank fails (an error they all meet) it
 * returns, and each rank finalizes and exits with its code, so the launcher forwards every
 * message; when the others do not join within 2 s it ends them all with MPI_Abort (exit code
 * `code`; does not return). Returns at once when there is no job of several ranks. Only the
 * command line calls it, after printing the error with bl_dist_rank(). */
void bl_dist_abort(int code);

int bl_dist_rank(void); /* 0 .. size-1 */
int bl_dist_size(void); /* 1 without a launcher */

bl_status bl_dist_barrier(bl_err *err);
/* Copies n bytes of root's buf into every rank's buf. */
bl_status bl_dist_bcast(void *buf, size_t n, int root, bl_err *err);
/* buf[i] = the sum over ranks of buf[i], on every rank. Deterministic for a given number of
 * ranks: the sums follow a fixed binomial tree (rank r adds what rank r + 2^k sent, k = 0, 1,
 * ..., in that order), whatever the message timing, and rank 0's result is broadcast as bytes,
 * so every rank holds the same bits. With one rank buf is unchanged. */
bl_status bl_dist_allreduce_sum_f32(float *buf, size_t n, bl_err *err);
bl_status bl_dist_allreduce_sum_f64(double *buf, size_t n, bl_err *err);
/* Variable-sized gather onto rank 0: every rank passes its n bytes; on rank 0 *parts receives
 * size() malloc'ed buffers (parts[r] from rank r, its own copied) and *sizes their lengths, both
 * freed with bl_dist_parts_free; other ranks get NULL. */
bl_status bl_dist_gather_bytes(const void *buf, size_t n, void ***parts, size_t **sizes,
                               bl_err *err);
void bl_dist_parts_free(void **parts, size_t *sizes);

/* What this process has sent and received and how long it waited in the calls above. */
typedef struct {
    uint64_t bytes_sent, bytes_received;
    double comm_seconds;
} bl_dist_stats;
bl_dist_stats bl_dist_get_stats(void);

/* Assigns n jobs of the given costs to `ranks` ranks: largest cost first (ties: lower index
 * first) onto the least-loaded rank (ties: lower rank), so ranks finish together. A pure
 * function of the costs: every rank computes the same plan. owner[i] receives job i's rank;
 * load (may be NULL, `ranks` entries) the summed cost per rank. */
bl_status bl_dist_assign(const double *cost, int n, int ranks, int *owner, double *load,
                         bl_err *err);

BL_API_END

#endif
