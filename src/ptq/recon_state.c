/* Block-wise reconstruction's data: the activation stores of this rank's calibration sequences
 * (in RAM, or in files beside the output when they exceed recon.mem_limit), and the state saved
 * after every finished block so that a killed run resumes after its last finished block:
 *   STATE/recon.block<b>.safetensors   the block's layers (as the model stores them) and, in its
 *                                      metadata, the block's report (exact numbers);
 *   STATE/recon.progress.safetensors   in its metadata: how many blocks are done and the
 *                                      fingerprint of the options and data they came from.
 * Both are written atomically, the layers first, so a kill at any moment leaves a consistent
 * state. The activations are not saved: the resumed run recomputes the next block's inputs from
 * the finished blocks (a forward pass each, the same bits), which also lets every rank of a job
 * rebuild its own shard from rank 0's state. */
#include "ptq/recon_internal.h"

#include "bitllm/dist.h"
#include "bitllm/io.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- stores ---- */

static bl_status store_open(rc_store *a, int64_t rows, int64_t width, const char *dir,
                            const char *name, bl_err *err) {
    memset(a, 0, sizeof *a);
    a->fd = -1;
    a->rows = rows;
    a->width = width;
    const size_t bytes = (size_t)rows * (size_t)width * sizeof(float);
    if (!dir) {
        a->mem = bl_malloc(bytes ? bytes : 1);
        return a->mem ? BL_OK
                      : bl_fail(err, BL_ERR_NOMEM, "out of memory for %.1f MiB of calibration "
                                "activations (set a memory limit to spill them to disk)",
                                bytes / 1048576.0);
    }
    const size_t n = strlen(dir) + strlen(name) + 2;
    a->path = malloc(n);
    if (!a->path) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    snprintf(a->path, n, "%s/%s", dir, name);
    a->fd = open(a->path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (a->fd < 0)
        return bl_fail(err, BL_ERR_IO, "%s: cannot create: %s", a->path, strerror(errno));
    if (ftruncate(a->fd, (off_t)bytes) != 0)
        return bl_fail(err, BL_ERR_IO, "%s: cannot size to %zu bytes: %s", a->path, bytes,
                       strerror(errno));
    return BL_OK;
}

static void store_close(rc_store *a) {
    free(a->mem);
    if (a->fd >= 0) close(a->fd);
    if (a->path) unlink(a->path);
    free(a->path);
    memset(a, 0, sizeof *a);
    a->fd = -1;
}

bl_status rc_store_io(rc_store *a, int64_t row0, int64_t n, float *buf, bool write,
                      bl_err *err) {
    const size_t off = (size_t)row0 * (size_t)a->width * sizeof(float);
    const size_t len = (size_t)n * (size_t)a->width * sizeof(float);
    if (row0 < 0 || n < 0 || row0 + n > a->rows)
        return bl_fail(err, BL_ERR_ARG, "activation rows %lld..%lld outside %lld",
                       (long long)row0, (long long)(row0 + n), (long long)a->rows);
    if (a->mem) {
        if (write) memcpy((char *)a->mem + off, buf, len);
        else memcpy(buf, (char *)a->mem + off, len);
        return BL_OK;
    }
    for (size_t done = 0; done < len;) {
        const ssize_t k = write ? pwrite(a->fd, (const char *)buf + done, len - done,
                                         (off_t)(off + done))
                                : pread(a->fd, (char *)buf + done, len - done, (off_t)(off + done));
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0)
            return bl_fail(err, BL_ERR_IO, "%s: cannot %s %zu bytes at %zu: %s", a->path,
                           write ? "write" : "read", len - done, off + done,
                           k < 0 ? strerror(errno) : "end of file");
        done += (size_t)k;
    }
    return BL_OK;
}

void rc_store_swap(rc_store *a, rc_store *b) {
    rc_store t = *a;
    *a = *b;
    *b = t;
}

/* ---- set-up ---- */

void rc_permutation(int64_t *perm, int64_t n, uint64_t seed) {
    bl_rng rng;
    bl_rng_seed(&rng, seed);
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        const int64_t j = (int64_t)(bl_rng_u64(&rng) % (uint64_t)(i + 1)), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

static uint64_t fnv(const void *p, size_t n, uint64_t h) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static void make_fingerprint(rc_ctx *r) {
    const bl_quant_opts *o = r->o;
    const bl_recon_opts *ro = &o->recon;
    char spec[256];
    bl_method_spec(&o->method, spec, sizeof spec);
    const uint64_t ids = fnv(r->ids, sizeof(int32_t) * (size_t)(r->n_seq * r->T),
                             0xcbf29ce484222325ull);
    snprintf(r->fingerprint, sizeof r->fingerprint,
             "v2 src=%s layers=%d dim=%lld method=%s bpw=%a seed=%llu iters=%d max_iters=%d "
             "tol=%a nmf=%d grad=%d seqs=%lld seq=%d ids=%016llx epochs=%d batch=%d lr=%a "
             "sign_lr=%a flip=%a target=%s",
             r->src->path ? r->src->path : "?", r->L, (long long)r->D, spec, o->bpw,
             (unsigned long long)o->fit.seed, o->fit.iters, o->fit.max_iters, o->fit.tol,
             (int)o->fit.nmf, (int)(o->grad_importance || o->out_importance),
             (long long)r->n_seq, r->T, (unsigned long long)ids, ro->epochs, ro->batch, ro->lr,
             ro->sign_lr, ro->flip_frac, ro->target_quant ? "quant" : "fp");
}

bl_status rc_init(rc_ctx *r, bl_err *err) {
    const bl_config *c = &r->src->cfg;
    static const int first_proj[PTQ_IN_COUNT] = {BL_PROJ_Q, BL_PROJ_O, BL_PROJ_GATE,
                                                 BL_PROJ_DOWN};
    for (int i = 0; i < PTQ_IN_COUNT; i++) {
        int64_t rows;
        bl_proj_shape(c, first_proj[i], &rows, &r->width[i]);
        r->H[i] = bl_malloc_array((size_t)(r->width[i] * r->width[i]), sizeof(float));
        if (!r->H[i]) return bl_fail(err, BL_ERR_NOMEM, "out of memory for XᵀX");
    }
    r->ybuf = bl_malloc_array((size_t)r->sh.b * (size_t)r->T * (size_t)r->D, sizeof(float));
    r->done = calloc((size_t)r->L, sizeof *r->done);
    if (!r->ybuf || !r->done) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    make_fingerprint(r);
    /* three stores of this rank's n_loc·T·D floats: in RAM when they fit the limit (per rank) */
    const int64_t rows = r->sh.n_loc * r->T;
    const double bytes = 3.0 * (double)rows * (double)r->D * sizeof(float);
    const uint64_t lim = r->o->recon.mem_limit;
    r->spilled = lim > 0 && bytes > (double)lim;
    /* rank 0 spills beside its output; the other ranks of a job, which write no output, into
     * TMPDIR (a node's local disk), under names with their rank and process id */
    const char *dir = !r->spilled ? NULL : r->o->recon.state_dir ? r->o->recon.state_dir
                                         : r->outdir              ? r->outdir
                                         : getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR")
                                                                                : "/tmp";
    char names[3][64];
    static const char *const what[3] = {"xq", "xfp", "y"};
    for (int i = 0; i < 3; i++) {
        if (bl_dist_size() == 1) snprintf(names[i], sizeof names[i], ".recon-%s.f32", what[i]);
        else snprintf(names[i], sizeof names[i], ".recon-%s.rank%d.%ld.f32", what[i],
                      bl_dist_rank(), (long)getpid());
    }
    bl_status s = store_open(&r->xq, rows, r->D, dir, names[0], err);
    if (!s) s = store_open(&r->xfp, rows, r->D, dir, names[1], err);
    if (!s) s = store_open(&r->y, rows, r->D, dir, names[2], err);
    /* block 1's inputs: the embeddings of this rank's calibration tokens */
    float *E = NULL;
    if (!s) s = bl_tensor_to_f32(&r->src->tok_embd, &E, err);
    for (int64_t t = 0; t < rows && !s; t++) {
        const int32_t id = r->ids[r->sh.seq0 * r->T + t];
        if (id < 0 || id >= c->vocab_size) {
            s = bl_fail(err, BL_ERR_ARG, "calibration token %lld is %d, outside the vocabulary "
                        "of %d", (long long)(r->sh.seq0 * r->T + t), id, c->vocab_size);
            break;
        }
        float *row = E + (size_t)id * (size_t)r->D;
        s = rc_store_io(&r->xq, t, 1, row, true, err);
        if (!s) s = rc_store_io(&r->xfp, t, 1, row, true, err);
    }
    free(E);
    return s;
}

void rc_free(rc_ctx *r) {
    for (int i = 0; i < PTQ_IN_COUNT; i++) free(r->H[i]);
    free(r->ybuf);
    free(r->done);
    store_close(&r->xq);
    store_close(&r->xfp);
    store_close(&r->y);
}

/* ---- saved state ---- */

/* The file's path on rank 0; on the other ranks (no state directory) only a name for messages. */
static void state_path(const rc_ctx *r, int b, char *buf, size_t cap) {
    const char *dir = r->o->recon.state_dir ? r->o->recon.state_dir : "(rank 0's state)";
    if (b < 0) snprintf(buf, cap, "%s/recon.progress.safetensors", dir);
    else snprintf(buf, cap, "%s/recon.block%d.safetensors", dir, b);
}

static cJSON *block_json(const bl_recon_block *b) {
    cJSON *j = cJSON_CreateObject();
    bl_json_add_exact(j, "loss_before", b->loss_before);
    bl_json_add_exact(j, "loss_after", b->loss_after);
    bl_json_add_exact(j, "rel_before", b->rel_before);
    bl_json_add_exact(j, "rel_after", b->rel_after);
    bl_json_add_exact(j, "seconds", b->seconds);
    bl_json_add_exact(j, "fit_s", b->fit_s);
    bl_json_add_exact(j, "forward_s", b->forward_s);
    bl_json_add_exact(j, "backward_s", b->backward_s);
    cJSON_AddNumberToObject(j, "steps", b->steps);
    cJSON_AddNumberToObject(j, "flips", (double)b->flips);
    cJSON_AddBoolToObject(j, "reverted", b->reverted);
    return j;
}

static void block_from_json(const cJSON *j, bl_recon_block *b) {
    bl_json_get_exact(j, "loss_before", &b->loss_before);
    bl_json_get_exact(j, "loss_after", &b->loss_after);
    bl_json_get_exact(j, "rel_before", &b->rel_before);
    bl_json_get_exact(j, "rel_after", &b->rel_after);
    bl_json_get_exact(j, "seconds", &b->seconds);
    bl_json_get_exact(j, "fit_s", &b->fit_s);
    bl_json_get_exact(j, "forward_s", &b->forward_s);
    bl_json_get_exact(j, "backward_s", &b->backward_s);
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(j, "steps");
    b->steps = cJSON_IsNumber(st) ? st->valueint : 0;
    const cJSON *fl = cJSON_GetObjectItemCaseSensitive(j, "flips");
    b->flips = cJSON_IsNumber(fl) ? (int64_t)fl->valuedouble : 0;
    b->reverted = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "reverted"));
}

bl_status rc_state_save(rc_ctx *r, const bl_linear *q, int b, bl_err *err) {
    if (!r->o->recon.state_dir) return BL_OK;
    char path[4200], name[64];
    bl_st_writer *w;
    /* the block's layers, their format parameters as raw bytes (read back by this build only) */
    bl_status s = bl_st_writer_new(&w, err);
    for (int p = 0; p < BL_PROJ_COUNT && !s; p++) {
        const int i = b * BL_PROJ_COUNT + p;
        snprintf(name, sizeof name, "p%d", i);
        s = q[i].ops->save(&q[i], name, w, err);
        snprintf(name, sizeof name, "p%d.params", i);
        const int64_t shape[1] = {(int64_t)sizeof q[i].params};
        if (!s) s = bl_st_writer_add(w, name, BL_DT_U8, 1, shape, &q[i].params,
                                     sizeof q[i].params, true, err);
    }
    cJSON *j = block_json(&r->done[b]);
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!s) s = text ? bl_st_writer_meta(w, "block", text, err)
                     : bl_fail(err, BL_ERR_NOMEM, "out of memory");
    free(text);
    state_path(r, b, path, sizeof path);
    if (!s) s = bl_st_writer_finish(w, path, err);
    bl_st_writer_free(w);
    if (s) return s;
    /* then the count of finished blocks */
    s = bl_st_writer_new(&w, err);
    char done[32];
    snprintf(done, sizeof done, "%d", b + 1);
    if (!s) s = bl_st_writer_meta(w, "blocks_done", done, err);
    if (!s) s = bl_st_writer_meta(w, "fingerprint", r->fingerprint, err);
    state_path(r, -1, path, sizeof path);
    if (!s) s = bl_st_writer_finish(w, path, err);
    bl_st_writer_free(w);
    return s;
}

/* Block b's saved layers and report, read by rank 0 and sent to every rank. */
static bl_status load_block(rc_ctx *r, bl_linear *q, int b, bl_err *err) {
    char path[4200], name[64];
    state_path(r, b, path, sizeof path);
    bl_tensor_set ts;
    memset(&ts, 0, sizeof ts);
    char *meta = NULL;
    uint8_t *bytes = NULL;
    size_t n_bytes = 0;
    bl_status s = rc_bcast_file(path, &bytes, &n_bytes, err);
    if (!s) s = bl_safetensors_parse(path, bytes, n_bytes, &ts, &meta, err);
    bl_linear views[BL_PROJ_COUNT];
    memset(views, 0, sizeof views);
    for (int p = 0; p < BL_PROJ_COUNT && !s; p++) {
        const int i = b * BL_PROJ_COUNT + p;
        snprintf(name, sizeof name, "p%d.params", i);
        const bl_tensor *t = bl_tensor_set_find(&ts, name);
        const bl_linear *S = &r->src->layers[b].proj[p];
        if (!t || t->nbytes != sizeof views[p].params) {
            s = bl_fail(err, BL_ERR_FORMAT, "%s: no %s of this build", path, name);
            break;
        }
        bl_linear *L = &views[p];
        L->ops = r->o->method.format;
        L->m = S->m;
        L->n = S->n;
        memcpy(&L->params, t->data, sizeof L->params);
        snprintf(name, sizeof name, "p%d", i);
        s = L->ops->load(L, name, &ts, err);
        if (s) L->ops = NULL;
    }
    /* owned copies through the training engine's import and export (the views die with ts) */
    nn_model *M = NULL;
    float *P = NULL;
    if (!s) s = rc_block_model(r->src, b, views, false, r->T, &M, &P, err);
    if (!s) s = rc_export_block(M, P, q + (size_t)b * BL_PROJ_COUNT, err);
    nn_model_free(M);
    bl_aligned_free(P);
    for (int p = 0; p < BL_PROJ_COUNT; p++) bl_linear_free(&views[p]);
    if (!s && meta) { /* {"block": "<json>"} */
        cJSON *mj = cJSON_Parse(meta);
        const cJSON *bj = cJSON_GetObjectItemCaseSensitive(mj, "block");
        cJSON *j = cJSON_IsString(bj) ? cJSON_Parse(bj->valuestring) : NULL;
        if (j) block_from_json(j, &r->done[b]);
        else s = bl_fail(err, BL_ERR_FORMAT, "%s: no block report in its metadata", path);
        r->done[b].block = b;
        r->done[b].blocks = r->L;
        cJSON_Delete(j);
        cJSON_Delete(mj);
    }
    free(meta);
    bl_tensor_set_free(&ts);
    free(bytes);
    return s;
}

bl_status rc_state_load(rc_ctx *r, bl_linear *q, int *start, bl_err *err) {
    *start = 0;
    char path[4200];
    int32_t done = 0; /* rank 0 decides; the other ranks have no state directory */
    bl_status s = BL_OK;
    state_path(r, -1, path, sizeof path);
    if (bl_dist_rank() == 0 && r->o->recon.state_dir && access(path, F_OK) == 0) {
        bl_tensor_set ts;
        memset(&ts, 0, sizeof ts);
        char *meta = NULL;
        s = bl_safetensors_open(path, &ts, &meta, err);
        cJSON *mj = s || !meta ? NULL : cJSON_Parse(meta);
        const cJSON *fp = cJSON_GetObjectItemCaseSensitive(mj, "fingerprint");
        const cJSON *dn = cJSON_GetObjectItemCaseSensitive(mj, "blocks_done");
        const int n = cJSON_IsString(dn) ? atoi(dn->valuestring) : -1;
        /* a state made with other options or data is not resumed (and is replaced) */
        if (!s && cJSON_IsString(fp) && strcmp(fp->valuestring, r->fingerprint) == 0 && n >= 1 &&
            n <= r->L)
            done = n;
        cJSON_Delete(mj);
        free(meta);
        bl_tensor_set_free(&ts);
    }
    if (!s && bl_dist_size() > 1) s = bl_dist_bcast(&done, sizeof done, 0, err);
    for (int b = 0; b < done && !s; b++) s = load_block(r, q, b, err);
    if (!s) *start = done;
    if (s) bl_fail_context(err, s, "resuming block reconstruction from %s",
                           r->o->recon.state_dir ? r->o->recon.state_dir : "rank 0's state");
    return s;
}

void rc_state_clear(rc_ctx *r) {
    if (!r->o->recon.state_dir) return;
    char path[4200];
    state_path(r, -1, path, sizeof path);
    unlink(path);
    for (int b = 0; b < r->L; b++) {
        state_path(r, b, path, sizeof path);
        unlink(path);
    }
}
