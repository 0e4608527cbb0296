/* Block-wise reconstruction's internals, shared by reconstruct.c (the stage), recon_state.c (the
 * activation stores, the saved state of finished blocks) and calibrate_scales.c. */
#ifndef BITLLM_RECON_INTERNAL_H
#define BITLLM_RECON_INTERNAL_H

#include "nn/nn.h"
#include "ptq/ptq_internal.h"

/* Activations of the calibration set (rows = tokens, width floats each): in RAM, or in a file
 * that is read and written in place (pread/pwrite). */
typedef struct {
    float *mem;
    int fd;
    char *path;
    int64_t rows, width;
} rc_store;

/* rows [row0, row0 + n) into buf (write false) or from buf (write true). */
bl_status rc_store_io(rc_store *a, int64_t row0, int64_t n, float *buf, bool write, bl_err *err);
void rc_store_swap(rc_store *a, rc_store *b);

/* The calibration sequences over the ranks of a job (recon_dist.c; docs/distributed.md). Every
 * optimizer step takes B sequences: the n_seq sequences form B contiguous groups of P = n_seq/B,
 * and step k of an epoch takes the k-th sequence of a seeded permutation of each group, so the
 * steps do not depend on the rank count. Rank r holds groups r·b … r·b + b − 1 (b = B/N), a
 * contiguous shard of n_loc = b·P sequences starting at seq0, and runs its b per step. */
typedef struct {
    int64_t n_seq;      /* all sequences */
    int B;              /* sequences per optimizer step, over all ranks */
    int b;              /* of which this rank's: B / ranks */
    int64_t seq0, n_loc; /* this rank's shard */
} rc_shard;

/* The shard plan: B = the largest divisor of n_seq that is at most cap and a multiple of the rank
 * count (an error names what to change when there is none). */
bl_status rc_shard_make(int64_t n_seq, int cap, rc_shard *sh, bl_err *err);
/* order[k·b + i] (n_loc entries) = the sequence (global index) of this rank's i-th row of step k
 * in the epoch drawn from seed. */
bl_status rc_epoch_order(const rc_shard *sh, uint64_t seed, int64_t *order, bl_err *err);
/* The one point where the ranks' shares of a step meet: buf summed over ranks in the fixed order
 * of bl_dist_allreduce_sum_* (the same bits on every rank, deterministic for a rank count); no-op
 * alone. what names the sum in errors. */
bl_status rc_sum_f32(float *buf, size_t n, const char *what, bl_err *err);
bl_status rc_sum_f64(double *buf, size_t n, const char *what, bl_err *err);
/* Every rank must hold the same calibration tokens: rank 0's count and hash are compared. */
bl_status rc_check_same_tokens(const int32_t *ids, int64_t n_seq, int T, bl_err *err);
/* Rank 0's file at path (ignored elsewhere) on every rank: *data malloc'ed, *n its size. */
bl_status rc_bcast_file(const char *path, uint8_t **data, size_t *n, bl_err *err);

typedef struct {
    const bl_model *src;
    const bl_quant_opts *o;
    const char *outdir;          /* spilled activations go here unless the state dir is set */
    const int64_t *mids;         /* allocated middle dimensions per projection, or NULL */
    int L, T, n_threads;
    int64_t D, n_seq;
    rc_shard sh;                 /* which sequences this rank holds; B, b per step */
    const int32_t *ids;          /* n_seq × T calibration tokens (all of them, on every rank) */
    int64_t width[PTQ_IN_COUNT]; /* input width of each distinct projection input */
    float *H[PTQ_IN_COUNT];      /* their XᵀX/N on the current block's inputs */
    float *ybuf;                 /* b·T·D */
    rc_store xq, xfp, y;         /* block inputs (quantized, FP) and targets of this rank's
                                  * sequences (row 0 = the first token of sequence seq0) */
    bool spilled;
    char fingerprint[1024];      /* what the saved state must have been made with */
    bl_recon_block *done;        /* per block, once finished */
    double forward_s, backward_s;
} rc_ctx;

/* Buffers, the stores (in RAM or spilled, by recon.mem_limit) filled with the embeddings of the
 * calibration sequences, and the fingerprint. */
bl_status rc_init(rc_ctx *r, bl_err *err);
void rc_free(rc_ctx *r);
/* Saved state (recon.state_dir, rank 0's): after block b, its layers (q[b·7 ..]) and the count
 * of finished blocks. */
bl_status rc_state_save(rc_ctx *r, const bl_linear *q, int b, bl_err *err);
/* Reads the state of an earlier run with the same fingerprint (rank 0 reads, every rank receives):
 * the layers of its finished blocks into q; *start = blocks finished (0: nothing to resume). The
 * caller recomputes the activations of the next block from them. */
bl_status rc_state_load(rc_ctx *r, bl_linear *q, int *start, bl_err *err);
/* Removes the saved state (the run is complete). */
void rc_state_clear(rc_ctx *r);

/* perm = a permutation of 0..n−1 drawn from seed (Fisher–Yates). */
void rc_permutation(int64_t *perm, int64_t n, uint64_t seed);

/* The training engine's one-layer model of layer l of src with projections proj (NULL: the
 * source's own), and its projections exported into q (7 format layers, replaced). */
bl_status rc_block_model(const bl_model *src, int l, const bl_linear *proj, bool student, int T,
                         nn_model **M, float **P, bl_err *err);
bl_status rc_export_block(const nn_model *S, const float *P, bl_linear *q, bl_err *err);

#endif
