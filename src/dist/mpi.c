/* The communication layer over MPI (Open MPI). Built only when CMake finds MPI; src/dist/serial.c
 * replaces it otherwise. Every operation is non-blocking underneath and waited for by polling
 * (wait_req), so a waiting rank sleeps instead of spinning on a core its peers need, and a wait
 * can end with an error that names the rank it waited for (BITLLM_DIST_TIMEOUT seconds). */
#include "bitllm/dist.h"

#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dist/dist_internal.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

static struct {
    bool active; /* MPI_Init was called */
    MPI_Comm comm;
    MPI_Comm fail_comm; /* only bl_dist_abort's barrier of failing ranks uses it */
    int rank, size;
    double timeout; /* seconds, 0 = none */
    bl_dist_stats stats;
} D = {.size = 1};

/* Messages are cut into pieces of at most this many bytes (MPI counts are ints). */
#define PIECE ((size_t)1 << 28)
/* The allreduce works on chunks of this many elements (its scratch memory is one chunk). */
#define CHUNK ((size_t)1 << 20)

bool bl_dist_built_with_mpi(void) { return true; }

static bl_status mpi_fail(bl_err *err, int rc, const char *what) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "code %d", rc);
    return bl_fail(err, BL_ERR_IO, "rank %d of %d: %s failed: %s", D.rank, D.size, what, msg);
}

bl_status bl_dist_init(int *argc, char ***argv, bl_err *err) {
    if (dist_launcher_size() == 0) return BL_OK; /* started plainly: one rank, no MPI */
    const char *t = getenv("BITLLM_DIST_TIMEOUT");
    if (t && *t) {
        char *end;
        D.timeout = strtod(t, &end);
        if (*end || !(D.timeout >= 0))
            return bl_fail(err, BL_ERR_ARG, "BITLLM_DIST_TIMEOUT must be a number of seconds "
                           ">= 0, got '%s'", t);
    }
    int provided, rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) return bl_fail(err, BL_ERR_IO, "MPI_Init_thread failed (code %d)", rc);
    D.active = true;
    /* a communicator of our own, whose errors come back as codes instead of ending the job */
    rc = MPI_Comm_dup(MPI_COMM_WORLD, &D.comm);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_set_errhandler(D.comm, MPI_ERRORS_RETURN);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_dup(MPI_COMM_WORLD, &D.fail_comm);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_set_errhandler(D.fail_comm, MPI_ERRORS_RETURN);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_rank(D.comm, &D.rank);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_size(D.comm, &D.size);
    if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "joining the MPI job");
    return BL_OK;
}

void bl_dist_finalize(void) {
    if (!D.active) return;
#if defined(__SANITIZE_ADDRESS__)
    /* The sanitizer build looks for leaks now, while Open MPI's own allocations are still
     * reachable: MPI_Finalize drops them and unloads its components, so the check at exit
     * would report them without a module to suppress them by. */
    __lsan_do_leak_check();
#endif
    MPI_Comm_free(&D.fail_comm);
    MPI_Comm_free(&D.comm);
    MPI_Finalize();
    D.active = false;
}

/* Polls rq, sleeping 1 µs, doubling up to 1 ms, between tests: 1 when it completed, 0 when
 * `limit` seconds passed first (limit 0: no limit), -1 when MPI_Test failed (its code in *rc). */
static int poll_req(MPI_Request *rq, double limit, int *rc) {
    const double t0 = bl_time_s();
    long ns = 1000;
    for (;;) {
        int done = 0;
        *rc = MPI_Test(rq, &done, MPI_STATUS_IGNORE);
        if (*rc != MPI_SUCCESS) return -1;
        if (done) return 1;
        if (limit > 0 && bl_time_s() - t0 > limit) return 0;
        struct timespec ts = {0, ns};
        nanosleep(&ts, NULL);
        if (ns < 1000000) ns *= 2;
    }
}

void bl_dist_abort(int code) {
    if (!D.active || D.size == 1) return;
    fflush(stdout);
    fflush(stderr);
    /* Failing ranks meet in a barrier on a communicator that nothing else uses. When every rank
     * arrives (an error they all meet: a bad option, an unusable calibration set) the job ends
     * normally with the exit code, so the launcher forwards every rank's message in full; an
     * abort can cut the forwarding short on a loaded machine. A rank that fails alone finds no
     * partners within the wait and ends the job with MPI_Abort, its message forwarded meanwhile. */
    MPI_Request rq;
    int rc;
    if (MPI_Ibarrier(D.fail_comm, &rq) == MPI_SUCCESS && poll_req(&rq, 2.0, &rc) == 1)
        return; /* every rank failed: the caller finalizes and exits with its code */
    MPI_Abort(MPI_COMM_WORLD, code);
}

int bl_dist_rank(void) { return D.rank; }
int bl_dist_size(void) { return D.size; }

/* Waits for rq (poll_req, up to BITLLM_DIST_TIMEOUT). peer names the rank waited for in messages
 * (-1: the others in a collective). */
static bl_status wait_req(MPI_Request *rq, int peer, const char *what, bl_err *err) {
    const double t0 = bl_time_s();
    int rc;
    const int got = poll_req(rq, D.timeout, &rc);
    if (got < 0) return mpi_fail(err, rc, what);
    if (got == 0) {
        if (peer >= 0)
            return bl_fail(err, BL_ERR_IO, "rank %d of %d: %s: no answer from rank %d within "
                           "%g s (BITLLM_DIST_TIMEOUT)", D.rank, D.size, what, peer, D.timeout);
        return bl_fail(err, BL_ERR_IO, "rank %d of %d: %s: the other ranks did not all take "
                       "part within %g s (BITLLM_DIST_TIMEOUT)", D.rank, D.size, what, D.timeout);
    }
    D.stats.comm_seconds += bl_time_s() - t0;
    return BL_OK;
}

static bl_status send_bytes(const void *buf, size_t n, int to, const char *what, bl_err *err) {
    for (size_t at = 0; at < n || (n == 0 && at == 0); at += PIECE) {
        const int len = (int)(n - at < PIECE ? n - at : PIECE);
        MPI_Request rq;
        int rc = MPI_Isend((const char *)buf + at, len, MPI_BYTE, to, 1, D.comm, &rq);
        if (rc != MPI_SUCCESS) return mpi_fail(err, rc, what);
        bl_status s = wait_req(&rq, to, what, err);
        if (s) return s;
        D.stats.bytes_sent += (uint64_t)len;
        if (n == 0) break;
    }
    return BL_OK;
}

static bl_status recv_bytes(void *buf, size_t n, int from, const char *what, bl_err *err) {
    for (size_t at = 0; at < n || (n == 0 && at == 0); at += PIECE) {
        const int len = (int)(n - at < PIECE ? n - at : PIECE);
        MPI_Request rq;
        int rc = MPI_Irecv((char *)buf + at, len, MPI_BYTE, from, 1, D.comm, &rq);
        if (rc != MPI_SUCCESS) return mpi_fail(err, rc, what);
        bl_status s = wait_req(&rq, from, what, err);
        if (s) return s;
        D.stats.bytes_received += (uint64_t)len;
        if (n == 0) break;
    }
    return BL_OK;
}

bl_status bl_dist_barrier(bl_err *err) {
    if (D.size == 1) return BL_OK;
    MPI_Request rq;
    int rc = MPI_Ibarrier(D.comm, &rq);
    if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "barrier");
    return wait_req(&rq, -1, "barrier", err);
}

/* A binomial tree from root over point-to-point messages (not MPI_Bcast), so that a wait that
 * gives up names the rank it waited for. */
bl_status bl_dist_bcast(void *buf, size_t n, int root, bl_err *err) {
    if (root < 0 || root >= D.size)
        return bl_fail(err, BL_ERR_ARG, "broadcast from rank %d of %d", root, D.size);
    if (D.size == 1) return BL_OK;
    const int rel = (D.rank - root + D.size) % D.size;
    int mask = 1;
    bl_status s = BL_OK;
    for (; mask < D.size; mask <<= 1)
        if (rel & mask) {
            s = recv_bytes(buf, n, (rel - mask + root) % D.size, "broadcast", err);
            break;
        }
    for (mask >>= 1; mask > 0 && !s; mask >>= 1)
        if (rel + mask < D.size) s = send_bytes(buf, n, (rel + mask + root) % D.size, "broadcast", err);
    return s;
}

/* One chunk of the sum: a binomial tree onto rank 0 (at round k = 1, 2, 4, ... a rank whose
 * lowest set bit is k sends its partial sum to rank - k, which adds it to its own in element
 * order), then rank 0's bytes are broadcast. The additions and their order depend only on the
 * rank count, never on timing. */
static bl_status reduce_chunk(void *acc, void *tmp, size_t n, size_t esz, bl_err *err) {
    const char *what = "allreduce";
    for (int k = 1; k < D.size; k <<= 1) {
        if (D.rank & k) {
            bl_status s = send_bytes(acc, n * esz, D.rank - k, what, err);
            if (s) return s;
            break;
        }
        if (D.rank + k < D.size) {
            bl_status s = recv_bytes(tmp, n * esz, D.rank + k, what, err);
            if (s) return s;
            if (esz == sizeof(float)) {
                float *a = acc;
                const float *b = tmp;
                for (size_t i = 0; i < n; i++) a[i] += b[i];
            } else {
                double *a = acc;
                const double *b = tmp;
                for (size_t i = 0; i < n; i++) a[i] += b[i];
            }
        }
    }
    return bl_dist_bcast(acc, n * esz, 0, err);
}

static bl_status allreduce(void *buf, size_t n, size_t esz, bl_err *err) {
    if (D.size == 1 || n == 0) return BL_OK;
    void *tmp = malloc((n < CHUNK ? n : CHUNK) * esz);
    if (!tmp) return bl_fail(err, BL_ERR_NOMEM, "allreduce: out of memory");
    bl_status s = BL_OK;
    for (size_t at = 0; at < n && !s; at += CHUNK)
        s = reduce_chunk((char *)buf + at * esz, tmp, n - at < CHUNK ? n - at : CHUNK, esz, err);
    free(tmp);
    return s;
}

bl_status bl_dist_allreduce_sum_f32(float *buf, size_t n, bl_err *err) {
    return allreduce(buf, n, sizeof(float), err);
}

bl_status bl_dist_allreduce_sum_f64(double *buf, size_t n, bl_err *err) {
    return allreduce(buf, n, sizeof(double), err);
}

bl_status bl_dist_gather_bytes(const void *buf, size_t n, void ***parts, size_t **sizes,
                               bl_err *err) {
    *parts = NULL;
    *sizes = NULL;
    if (D.size == 1) return dist_gather_self(buf, n, parts, sizes, err);
    const char *what = "gather";
    if (D.rank != 0) {
        uint64_t len = n;
        bl_status s = send_bytes(&len, sizeof len, 0, what, err);
        return s ? s : send_bytes(buf, n, 0, what, err);
    }
    bl_status s = dist_parts_new(D.size, parts, sizes, err);
    if (s) return s;
    (*parts)[0] = malloc(n ? n : 1);
    if (!(*parts)[0]) s = bl_fail(err, BL_ERR_NOMEM, "gather: out of memory");
    else if (n) memcpy((*parts)[0], buf, n);
    (*sizes)[0] = n;
    /* one rank after the other, in rank order */
    for (int r = 1; r < D.size && !s; r++) {
        uint64_t len;
        s = recv_bytes(&len, sizeof len, r, what, err);
        if (!s && len > SIZE_MAX / 2)
            s = bl_fail(err, BL_ERR_IO, "gather: rank %d announces %llu bytes", r,
                        (unsigned long long)len);
        if (!s && !((*parts)[r] = malloc(len ? (size_t)len : 1)))
            s = bl_fail(err, BL_ERR_NOMEM, "gather: out of memory for %llu bytes from rank %d",
                        (unsigned long long)len, r);
        if (!s) {
            (*sizes)[r] = (size_t)len;
            s = recv_bytes((*parts)[r], (size_t)len, r, what, err);
        }
    }
    if (s) {
        bl_dist_parts_free(*parts, *sizes);
        *parts = NULL;
        *sizes = NULL;
    }
    return s;
}

bl_dist_stats bl_dist_get_stats(void) { return D.stats; }
