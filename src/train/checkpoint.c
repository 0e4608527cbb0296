/* Training checkpoints: one safetensors file, OUTDIR/checkpoint/state.safetensors, written to a
 * temporary name and renamed (bl_st_writer_finish), so a run killed at any moment leaves either
 * the previous checkpoint or the new one. It holds every trainable tensor ("param/<name>"), its
 * Adam moments ("adam_m/<name>", "adam_v/<name>"), the sign matrices that flipping may change
 * ("signs/<layer prefix>.<i>"), and in __metadata__["bitllm_train"] a JSON object with the step,
 * the data position, the token count, the loss before training and the options that fix the data
 * order, every number stored exactly (as a string). The data order's
 * random stream is counter-based (a permutation drawn from (seed, epoch)), so the data position
 * is its whole state. Frozen tensors are rebuilt from STUDENT on resume. */
#include "train/train_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define STATE_FILE "checkpoint/state.safetensors"

static bl_status make_dir(const char *path, bl_err *err) {
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return bl_fail(err, BL_ERR_IO, "%s: cannot create directory: %s", path, strerror(errno));
    return BL_OK;
}

/* Calls fn for every sign matrix that has a flipping score, with its tensor name. */
typedef bl_status (*signs_fn)(void *ctx, nn_signs *s, const char *name, bl_err *err);

static bl_status each_flippable(const nn_model *M, signs_fn fn, void *ctx, bl_err *err) {
    char name[BL_MAX_NAME];
    for (int l = 0; l < M->cfg.n_layers; l++)
        for (int p = 0; p < BL_PROJ_COUNT; p++) {
            const nn_linear *L = &M->layers[l].proj[p];
            for (int i = 0; i < L->n_signs; i++) {
                if (L->S[i].latent == NN_NONE) continue;
                char proj[96];
                bl_proj_name(l, p, proj, sizeof proj);
                snprintf(name, sizeof name, "signs/%s.%d", proj, i);
                bl_status s = fn(ctx, &L->S[i], name, err);
                if (s) return s;
            }
        }
    return BL_OK;
}

static bl_status add_signs(void *ctx, nn_signs *s, const char *name, bl_err *err) {
    int64_t shape[2] = {s->rows, bl_sign_row_bytes(s->cols)};
    return bl_st_writer_add(ctx, name, BL_DT_U8, 2, shape, s->bits,
                            (size_t)(shape[0] * shape[1]), false, err);
}

/* Version 2 stores every number as a string (bl_json_add_exact / _i64): a resumed run must see
 * exactly the loss and counters the killed one had (version 1 wrote JSON numbers, which cJSON
 * does not always read back bit for bit, and is still read). */
static cJSON *state_json(const nn_model *M, const tr_state *st, const bl_distill_opts *o) {
    cJSON *j = cJSON_CreateObject();
    bool ok = j && cJSON_AddNumberToObject(j, "version", 2);
    ok = ok && bl_json_add_i64(j, "step", st->step);
    ok = ok && bl_json_add_i64(j, "data_pos", st->data_pos);
    ok = ok && bl_json_add_i64(j, "tokens", st->tokens);
    ok = ok && bl_json_add_i64(j, "flips", st->flips);
    ok = ok && bl_json_add_exact(j, "seconds", st->seconds);
    ok = ok && bl_json_add_exact(j, "loss_before", st->loss_before);
    ok = ok && bl_json_add_exact(j, "ce_before", st->ce_before);
    ok = ok && bl_json_add_exact(j, "mse_before", st->mse_before);
    ok = ok && bl_json_add_i64(j, "n_params", (int64_t)M->n_params);
    ok = ok && bl_json_add_u64(j, "seed", o->seed);
    ok = ok && bl_json_add_i64(j, "seq", o->seq);
    ok = ok && bl_json_add_i64(j, "batch", o->batch);
    ok = ok && bl_json_add_i64(j, "accum", o->accum);
    if (!ok) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

bl_status tr_checkpoint_save(const char *outdir, const nn_model *M, const float *P,
                             const float *m, const float *v, const tr_state *st,
                             const bl_distill_opts *o, bl_err *err) {
    char path[4200];
    bl_status s = make_dir(outdir, err);
    snprintf(path, sizeof path, "%s/checkpoint", outdir);
    if (!s) s = make_dir(path, err);
    if (s) return s;
    bl_remove_stale_tmp(path, "state.safetensors"); /* left by runs killed while saving */
    bl_st_writer *w;
    if ((s = bl_st_writer_new(&w, err))) return s;
    const float *bufs[3] = {P, m, v};
    const char *kinds[3] = {"param", "adam_m", "adam_v"};
    for (int i = 0; i < M->n_t && !s; i++) {
        const nn_tensor *t = &M->t[i];
        if (!t->trainable) continue;
        int64_t shape[1] = {(int64_t)t->numel};
        for (int k = 0; k < 3 && !s; k++) {
            char name[BL_MAX_NAME];
            snprintf(name, sizeof name, "%s/%s", kinds[k], t->name);
            s = bl_st_writer_add(w, name, BL_DT_F32, 1, shape, bufs[k] + t->off,
                                 t->numel * sizeof(float), false, err);
        }
    }
    if (!s) s = each_flippable(M, add_signs, w, err);
    cJSON *j = state_json(M, st, o);
    char *text = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    if (!s) s = text ? bl_st_writer_meta(w, "bitllm_train", text, err)
                     : bl_fail(err, BL_ERR_NOMEM, "out of memory");
    free(text);
    snprintf(path, sizeof path, "%s/%s", outdir, STATE_FILE);
    if (!s) s = bl_st_writer_finish(w, path, err);
    bl_st_writer_free(w);
    return s;
}

/* ---- loading ---- */

typedef struct {
    const bl_tensor_set *ts;
    const char *path;
} load_ctx;

static bl_status load_signs(void *vctx, nn_signs *s, const char *name, bl_err *err) {
    load_ctx *c = vctx;
    const bl_tensor *t = bl_tensor_set_find(c->ts, name);
    const int64_t rb = bl_sign_row_bytes(s->cols);
    if (!t || t->dtype != BL_DT_U8 || t->nbytes != (size_t)(s->rows * rb))
        return bl_fail(err, BL_ERR_FORMAT, "%s: missing or malformed %s", c->path, name);
    memcpy(s->bits, t->data, t->nbytes);
    return nn_signs_refresh(s, err);
}

static bl_status copy_f32(const bl_tensor_set *ts, const char *path, const char *kind,
                          const nn_tensor *t, float *dst, bl_err *err) {
    char name[BL_MAX_NAME];
    snprintf(name, sizeof name, "%s/%s", kind, t->name);
    const bl_tensor *x = bl_tensor_set_find(ts, name);
    if (!x || x->dtype != BL_DT_F32 || x->nbytes != t->numel * sizeof(float))
        return bl_fail(err, BL_ERR_FORMAT, "%s: missing or malformed %s (was the checkpoint made "
                       "with other training flags?)", path, name);
    memcpy(dst + t->off, x->data, x->nbytes);
    return BL_OK;
}

static int64_t int_of(const cJSON *j, const char *key) {
    int64_t v;
    return bl_json_get_i64(j, key, &v) ? v : INT64_MIN;
}

static bl_status check_opts(const cJSON *j, const char *path, const nn_model *M,
                            const bl_distill_opts *o, bl_err *err) {
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(j, "seed");
    char want[32];
    snprintf(want, sizeof want, "%llu", (unsigned long long)o->seed);
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(j, "version");
    if (!cJSON_IsNumber(ver) || (ver->valuedouble != 1 && ver->valuedouble != 2))
        return bl_fail(err, BL_ERR_FORMAT, "%s: unknown checkpoint version", path);
    if (int_of(j, "n_params") != (int64_t)M->n_params)
        return bl_fail(err, BL_ERR_ARG, "%s: made for another student (parameter count)", path);
    struct { const char *key; int want; } same[] = {
        {"seq", o->seq}, {"batch", o->batch}, {"accum", o->accum}};
    for (int i = 0; i < 3; i++)
        if (int_of(j, same[i].key) != same[i].want)
            return bl_fail(err, BL_ERR_ARG, "%s: the checkpoint was made with --%s %lld, this run "
                           "asks for %d", path, same[i].key, (long long)int_of(j, same[i].key),
                           same[i].want);
    if (!cJSON_IsString(seed) || strcmp(seed->valuestring, want) != 0)
        return bl_fail(err, BL_ERR_ARG, "%s: the checkpoint was made with another --seed", path);
    return BL_OK;
}

bl_status tr_checkpoint_load(const char *outdir, nn_model *M, float *P, float *m, float *v,
                             tr_state *st, const bl_distill_opts *o, bl_err *err) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", outdir, STATE_FILE);
    bl_tensor_set ts = {0};
    char *meta = NULL;
    bl_status s = bl_safetensors_open(path, &ts, &meta, err);
    cJSON *mj = s ? NULL : cJSON_Parse(meta ? meta : "");
    const cJSON *txt = cJSON_GetObjectItemCaseSensitive(mj, "bitllm_train");
    cJSON *j = cJSON_IsString(txt) ? cJSON_Parse(txt->valuestring) : NULL;
    if (!s && !j) s = bl_fail(err, BL_ERR_FORMAT, "%s: no training state in the metadata", path);
    if (!s) s = check_opts(j, path, M, o, err);
    for (int i = 0; i < M->n_t && !s; i++) {
        const nn_tensor *t = &M->t[i];
        if (!t->trainable) continue;
        s = copy_f32(&ts, path, "param", t, P, err);
        if (!s) s = copy_f32(&ts, path, "adam_m", t, m, err);
        if (!s) s = copy_f32(&ts, path, "adam_v", t, v, err);
    }
    /* every stored tensor must be one this run trains */
    for (int i = 0; i < ts.n && !s; i++) {
        const char *nm = ts.t[i].name, *slash = strchr(nm, '/');
        if (strncmp(nm, "param/", 6) != 0 || !slash) continue;
        const nn_tensor *t = nn_model_find(M, slash + 1);
        if (!t || !t->trainable)
            s = bl_fail(err, BL_ERR_ARG, "%s: trains %s, which this run keeps frozen", path,
                        slash + 1);
    }
    load_ctx lc = {&ts, path};
    if (!s) s = each_flippable(M, load_signs, &lc, err);
    if (!s) {
        int64_t step, pos, tok, flips;
        double sec, loss, ce, mse;
        if (!bl_json_get_i64(j, "step", &step) || !bl_json_get_i64(j, "data_pos", &pos) ||
            !bl_json_get_i64(j, "tokens", &tok) || !bl_json_get_i64(j, "flips", &flips) ||
            !(step >= 0 && step <= 1000000000 && pos >= 0 && tok >= 0 && flips >= 0))
            s = bl_fail(err, BL_ERR_FORMAT, "%s: bad step, data position or counters", path);
        else if (!bl_json_get_exact(j, "seconds", &sec) ||
                 !bl_json_get_exact(j, "loss_before", &loss) ||
                 !bl_json_get_exact(j, "ce_before", &ce) || !bl_json_get_exact(j, "mse_before", &mse))
            s = bl_fail(err, BL_ERR_FORMAT, "%s: bad time or loss in the training state", path);
        if (!s) {
            st->step = (int)step;
            st->data_pos = pos;
            st->tokens = tok;
            st->flips = flips;
            st->seconds = sec;
            st->loss_before = loss;
            st->ce_before = ce;
            st->mse_before = mse;
        }
    }
    cJSON_Delete(j);
    cJSON_Delete(mj);
    free(meta);
    bl_tensor_set_free(&ts);
    return s;
}
