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

typedef struct {
    const bl_model *src;
    const bl_quant_opts *o;
    const char *outdir;          /* spilled activations go here unless the state dir is set */
    const int64_t *mids;         /* allocated middle dimensions per projection, or NULL */
    int L, T, B, n_threads;
    int64_t D, n_seq;
    const int32_t *ids;          /* n_seq × T calibration tokens */
    int64_t width[PTQ_IN_COUNT]; /* input width of each distinct projection input */
    float *H[PTQ_IN_COUNT];      /* their XᵀX/N on the current block's inputs */
    float *ybuf;                 /* B·T·D */
    rc_store xq, xfp, y;         /* block inputs (quantized, FP) and targets */
    bool spilled;
    char fingerprint[1024];      /* what the saved state must have been made with */
    bl_recon_block *done;        /* per block, once finished */
    double forward_s, backward_s;
} rc_ctx;

/* Buffers, the stores (in RAM or spilled, by recon.mem_limit) filled with the embeddings of the
 * calibration sequences, and the fingerprint. */
bl_status rc_init(rc_ctx *r, bl_err *err);
void rc_free(rc_ctx *r);
/* Saved state (recon.state_dir): after block b, its layers (q[b·7 ..]) and the activations. */
bl_status rc_state_save(rc_ctx *r, const bl_linear *q, int b, bl_err *err);
/* Reads the state of an earlier run with the same fingerprint: the layers of its finished blocks
 * into q, the activations into the stores; *start = blocks finished (0: nothing to resume). */
bl_status rc_state_load(rc_ctx *r, bl_linear *q, int *start, bl_err *err);
/* Removes the saved state (the run is complete). */
void rc_state_clear(rc_ctx *r);

/* Sequences per mini-batch: the largest divisor of n at most cap (every batch is full). */
int rc_batch_size(int64_t n, int cap);
/* perm = a permutation of 0..n−1 drawn from seed (Fisher–Yates). */
void rc_permutation(int64_t *perm, int64_t n, uint64_t seed);

/* The training engine's one-layer model of layer l of src with projections proj (NULL: the
 * source's own), and its projections exported into q (7 format layers, replaced). */
bl_status rc_block_model(const bl_model *src, int l, const bl_linear *proj, bool student, int T,
                         nn_model **M, float **P, bl_err *err);
bl_status rc_export_block(const nn_model *S, const float *P, bl_linear *q, bl_err *err);

#endif
