/* The distillation loop (ALGORITHMS.md §3): per micro-batch the teacher runs forward (its
 * next-token distributions and L2-normalised hidden states are the targets), the student runs
 * forward and backward on L = CE(p_teacher, p_student) + α·Σ_layers MSE(hidden), gradients
 * accumulate over `accum` micro-batches, then clipping, AdamW, re-signing of the onebit layers,
 * optional sign flipping, progress and checkpoints. Every step is a deterministic function of
 * the checkpointed state, so a resumed run reproduces an uninterrupted one bit for bit. */
#include "train/train_internal.h"
#include "bitllm/dist.h"
#include "core/parallel.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void bl_distill_opts_default(bl_distill_opts *o) {
    memset(o, 0, sizeof *o);
    o->steps = 200;
    o->seq = 256;
    o->batch = 8;
    o->accum = 1;
    o->lr = 1e-3;
    o->warmup = -1; /* steps/20 */
    o->wd = 0.01;
    o->beta1 = 0.9;
    o->beta2 = 0.98;
    o->adam_eps = 1e-8;
    o->clip = 1.0;
    o->alpha = 1.0;
    o->flip_frac = 1e-3;
    o->post_ln = 1;
    o->latent_init = 0.01f;
    o->eval_batches = 1;
}

typedef struct {
    bl_distill_opts o;
    const bl_train_data *data;
    nn_model *S, *T;
    float *PS, *PT, *G, *m, *v;
    nn_acts_f32 *AS, *AT;
    int32_t *tok;
    tr_order order;
    tr_state st;
    int ranks, rank;  /* data-parallel over MPI ranks (dist_step.c); 1 and 0 alone */
    const char *teacher_path, *student_path;
} trainer;

static void trainer_free(trainer *t) {
    nn_model_free(t->S);
    nn_model_free(t->T);
    bl_aligned_free(t->PS);
    bl_aligned_free(t->PT);
    bl_aligned_free(t->G);
    bl_aligned_free(t->m);
    bl_aligned_free(t->v);
    nn_acts_free_f32(t->AS);
    nn_acts_free_f32(t->AT);
    free(t->tok);
    tr_order_free(&t->order);
}

static float *zeros(size_t n) {
    float *p = bl_aligned_alloc((n ? n : 1) * sizeof(float));
    if (p) memset(p, 0, n * sizeof(float));
    return p;
}

static bl_status check_opts(const bl_distill_opts *o, const bl_model *teacher,
                            const bl_model *student, const bl_train_data *d, bl_err *err) {
    const bl_config *a = &teacher->cfg, *b = &student->cfg;
    if (a->dim != b->dim || a->n_layers != b->n_layers || a->vocab_size != b->vocab_size)
        return bl_fail(err, BL_ERR_ARG, "teacher (dim %d, %d layers, vocab %d) and student (dim "
                       "%d, %d layers, vocab %d) do not match", a->dim, a->n_layers,
                       a->vocab_size, b->dim, b->n_layers, b->vocab_size);
    if (o->steps < 1 || o->batch < 1 || o->accum < 1 || o->seq < 2)
        return bl_fail(err, BL_ERR_ARG, "steps, batch and accum must be >= 1 and seq >= 2");
    if (o->seq > b->max_seq)
        return bl_fail(err, BL_ERR_ARG, "--seq %d exceeds the model's context %d", o->seq,
                       b->max_seq);
    if (!d || d->n_rows < 1 || d->seq != o->seq)
        return bl_fail(err, BL_ERR_ARG, "training data must be rows of --seq %d tokens", o->seq);
    if (!(o->lr > 0) || !(o->lr_min >= 0) || !(o->wd >= 0) || !(o->clip >= 0) ||
        !(o->alpha >= 0) || !(o->beta1 >= 0 && o->beta1 < 1) || !(o->beta2 >= 0 && o->beta2 < 1))
        return bl_fail(err, BL_ERR_ARG, "bad optimizer settings (lr > 0, wd, clip, alpha >= 0, "
                       "betas in [0, 1))");
    if (o->flip_every < 0 || !(o->flip_frac >= 0 && o->flip_frac <= 1))
        return bl_fail(err, BL_ERR_ARG, "--flip-every must be >= 0 and --flip-frac in [0, 1]");
    return BL_OK;
}

static bl_status trainer_init(trainer *t, const bl_model *teacher, const bl_model *student,
                              bl_err *err) {
    const bl_distill_opts *o = &t->o;
    nn_build_opts so, to;
    nn_build_opts_default(&so);
    so.latent_init = o->latent_init;
    so.post_ln = o->post_ln;
    so.train_embed = o->train_embed;
    so.train_head = o->train_head;
    so.train_norms = !o->freeze_norms;
    so.flip = o->flip_every > 0;
    nn_build_opts_default(&to);
    to.post_ln = -1;
    to.train_norms = to.train_quant = false;
    bl_status s = nn_model_from_bl(student, o->seq, &so, &t->S, &t->PS, err);
    if (!s) s = nn_model_from_bl(teacher, o->seq, &to, &t->T, &t->PT, err);
    if (s) return s;
    const size_t n = t->S->n_params;
    t->G = zeros(n);
    t->m = zeros(n);
    t->v = zeros(n);
    t->tok = malloc(sizeof(int32_t) * (size_t)o->batch * (size_t)o->seq);
    if (!t->G || !t->m || !t->v || !t->tok)
        return bl_fail(err, BL_ERR_NOMEM, "out of memory for the optimizer state");
    if ((s = nn_acts_new_f32(t->S, o->batch, o->seq, &t->AS, err))) return s;
    if ((s = nn_acts_new_f32(t->T, o->batch, o->seq, &t->AT, err))) return s;
    return tr_order_init(&t->order, t->data, o->seed, err);
}

/* A non-finite loss: which model's forward pass produced the first NaN/Inf, and where. */
static bl_status loss_not_finite(const trainer *t, double ce, double mse, bl_err *err) {
    char where[200];
    if (tr_find_nonfinite(t->T, t->AT, where, sizeof where))
        return bl_fail(err, BL_ERR_NUMERIC, "the loss is not finite (ce %g, mse %g): the teacher "
                       "%s has a non-finite value %s", ce, mse, t->teacher_path, where);
    if (tr_find_nonfinite(t->S, t->AS, where, sizeof where))
        return bl_fail(err, BL_ERR_NUMERIC, "the loss is not finite (ce %g, mse %g): the student "
                       "(from %s) has a non-finite value %s", ce, mse, t->student_path, where);
    return bl_fail(err, BL_ERR_NUMERIC, "the loss is not finite (ce %g, mse %g)", ce, mse);
}

/* Teacher targets and student loss for the rows now in t->tok; with backward, the gradients
 * (scaled by 1/accum) accumulate into t->G. A non-finite loss is an error naming its origin
 * (checked before the backward pass, so the stored activations still show it). */
static bl_status micro_batch(trainer *t, bool backward, double *ce, double *mse, bl_err *err) {
    const bl_config *c = &t->S->cfg;
    nn_acts_f32 *AS = t->AS, *AT = t->AT;
    const int64_t N = AS->N, D = c->dim, V = c->vocab_size;
    const double scale = 1.0 / ((double)t->o.accum * t->ranks); /* gradients: global mean */
    nn_forward_f32(t->T, t->PT, AT, t->tok);
    nn_softmax_rows_f32(AT->logits, AT->logits, N, (int)V);
    nn_l2_normalize_rows_f32(AT->x + N * D, AT->x + N * D, c->n_layers * N, (int)D);
    nn_forward_f32(t->S, t->PS, AS, t->tok);
    *ce = nn_soft_ce_f32(AS->logits, AT->logits, N, (int)V, scale,
                         backward ? AS->logits : NULL, AS->row);
    *mse = 0;
    for (int l = 0; l < c->n_layers; l++)
        *mse += nn_hidden_mse_f32(AS->x + (l + 1) * N * D, AT->x + (l + 1) * N * D, N, (int)D,
                                  t->o.alpha * scale, backward ? AS->dhid + l * N * D : NULL,
                                  AS->row);
    if (!isfinite(*ce) || !isfinite(*mse)) return loss_not_finite(t, *ce, *mse, err);
    if (backward) nn_backward_f32(t->S, t->PS, t->G, AS, t->tok, AS->logits, AS->dhid);
    return BL_OK;
}

/* KD loss on fixed batches: the first eval_batches·batch rows of the data, in file order. */
static bl_status eval_loss(trainer *t, double *loss, double *ce, double *mse, const char *when,
                           bl_err *err) {
    const int B = t->o.batch, T = t->o.seq, nb = t->o.eval_batches > 0 ? t->o.eval_batches : 1;
    double sc = 0, sm = 0;
    for (int e = 0; e < nb; e++) {
        for (int b = 0; b < B; b++) {
            const int64_t r = ((int64_t)e * B + b) % t->data->n_rows;
            memcpy(t->tok + (int64_t)b * T, t->data->ids + r * T, sizeof(int32_t) * (size_t)T);
        }
        double c1, m1;
        bl_status s = micro_batch(t, false, &c1, &m1, err);
        if (s) return bl_fail_context(err, s, "%s (fixed batch %d)", when, e + 1);
        sc += c1;
        sm += m1;
    }
    *ce = sc / nb;
    *mse = sm / nb;
    *loss = *ce + t->o.alpha * *mse;
    return BL_OK;
}

static void note(const bl_distill_opts *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void note(const bl_distill_opts *o, const char *fmt, ...) {
    if (!o->on_note) return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    o->on_note(o->on_note_ctx, buf);
}

static char *provenance_json(const trainer *t, const bl_model *teacher, const bl_model *student) {
    const bl_distill_opts *o = &t->o;
    cJSON *p = cJSON_CreateObject(), *d = cJSON_AddObjectToObject(p, "distillation");
    cJSON_AddStringToObject(d, "teacher", teacher->path);
    cJSON_AddStringToObject(d, "student", student->path);
    /* integers below 2^31 are exact as JSON numbers; the rest are stored as exact strings */
    cJSON_AddNumberToObject(d, "steps", t->st.step);
    bl_json_add_i64(d, "tokens", t->st.tokens);
    cJSON_AddNumberToObject(d, "seq", o->seq);
    cJSON_AddNumberToObject(d, "batch", o->batch);
    cJSON_AddNumberToObject(d, "accum", o->accum);
    if (t->ranks > 1) cJSON_AddNumberToObject(d, "ranks", t->ranks); /* data-parallel */
    bl_json_add_exact(d, "lr", o->lr);
    bl_json_add_exact(d, "min_lr", o->lr_min);
    bl_json_add_exact(d, "alpha", o->alpha);
    bl_json_add_u64(d, "seed", o->seed);
    bl_json_add_i64(d, "flips", t->st.flips);
    if (o->provenance) cJSON_AddStringToObject(d, "command", o->provenance);
    if (student->quant_config_json) { /* keep how the student was quantized */
        cJSON *q = cJSON_Parse(student->quant_config_json);
        cJSON *prov = cJSON_DetachItemFromObjectCaseSensitive(q, "provenance");
        if (prov) cJSON_AddItemToObject(p, "quantization", prov);
        cJSON_Delete(q);
    }
    char *s = cJSON_PrintUnformatted(p);
    cJSON_Delete(p);
    return s;
}

/* One optimizer step; returns BL_ERR_NUMERIC on a non-finite loss or gradient. */
static bl_status train_step(trainer *t, int step, bl_distill_progress *pr, bl_err *err) {
    const bl_distill_opts *o = &t->o;
    const int B = o->batch, T = o->seq;
    memset(t->G, 0, sizeof(float) * t->S->n_params);
    double ce = 0, mse = 0;
    /* rank r takes micro-batches r·accum .. r·accum + accum − 1 of the step's ranks·accum */
    const int64_t base = t->st.data_pos + (int64_t)t->rank * o->accum * B;
    for (int a = 0; a < o->accum; a++) {
        for (int b = 0; b < B; b++)
            memcpy(t->tok + (int64_t)b * T, tr_order_row(&t->order, base + (int64_t)a * B + b),
                   sizeof(int32_t) * (size_t)T);
        double c1, m1;
        bl_status s = micro_batch(t, true, &c1, &m1, err);
        if (s) return bl_fail_context(err, s, "step %d, micro-batch %d", step + 1, a + 1);
        ce += c1 / o->accum;
        mse += m1 / o->accum;
    }
    t->st.data_pos += (int64_t)t->ranks * o->accum * B;
    bl_status ds = tr_dist_sum_grads(t->G, t->S->n_params, &ce, &mse, err);
    if (ds) return bl_fail_context(err, ds, "step %d", step + 1);
    const double gnorm = tr_grad_norm(t->S, t->G);
    if (!isfinite(gnorm)) {
        const char *bad = tr_nonfinite_grad(t->S, t->G);
        return bl_fail(err, BL_ERR_NUMERIC, "step %d: the gradients are not finite (norm %g; "
                       "first in %s of the student from %s)", step + 1, gnorm,
                       bad ? bad : "?", t->student_path);
    }
    const float gscale = o->clip > 0 && gnorm > o->clip ? (float)(o->clip / gnorm) : 1.0f;
    const double lr = tr_lr(o, step);
    tr_adamw(t->S, t->PS, t->G, t->m, t->v, step + 1, lr, 1.0, gscale, o);
    bl_status s = nn_model_sync_signs_f32(t->S, t->PS, err);
    if (!s && o->flip_every > 0 && (step + 1) % o->flip_every == 0) {
        int64_t f = 0;
        s = tr_flip_signs(t->S, t->PS, o->flip_frac, &f, err);
        t->st.flips += f;
    }
    t->st.step = step + 1;
    t->st.tokens += (int64_t)t->ranks * o->accum * B * T;
    pr->loss = ce + o->alpha * mse;
    pr->ce = ce;
    pr->mse = mse;
    pr->lr = lr;
    pr->grad_norm = gnorm;
    return s;
}

/* The nn option each distillation option is (the table of trainable formats says who reads it). */
static const nn_opt distill_opt_nn[BL_DO_COUNT] = {
    [BL_DO_POST_LN] = NN_OPT_POST_LN, [BL_DO_LATENT_INIT] = NN_OPT_LATENT_INIT,
    [BL_DO_FLIP] = NN_OPT_FLIP};

static bool format_reads(const nn_format *e, bl_distill_opt opt) {
    return (unsigned)opt < BL_DO_COUNT && (e->opts & NN_OPT_BIT(distill_opt_nn[opt]));
}

/* Which distillation options a student reads: the table of trainable formats decides. */
bool bl_distill_student_reads(const bl_model *student, bl_distill_opt opt) {
    for (int l = 0; l < student->cfg.n_layers; l++)
        for (int p = 0; p < BL_PROJ_COUNT; p++) {
            const nn_format *e = nn_format_of(student->layers[l].proj[p].ops);
            if (e && format_reads(e, opt)) return true;
        }
    return false;
}

void bl_distill_opt_users(bl_distill_opt opt, char *buf, size_t cap) {
    size_t n = 0;
    buf[0] = 0;
    for (int k = 0; k < nn_n_formats && n < cap; k++)
        if (format_reads(nn_formats[k], opt))
            n += (size_t)snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", nn_formats[k]->format);
}

static bl_status distill_run(const bl_model *teacher, const bl_model *student,
                             const bl_train_data *data, const char *outdir,
                             const bl_distill_opts *opts, bl_distill_result *res, bl_err *err) {
    memset(res, 0, sizeof *res);
    trainer t;
    memset(&t, 0, sizeof t);
    t.o = *opts;
    if (t.o.warmup < 0) t.o.warmup = t.o.steps / 20;
    t.data = data;
    t.ranks = bl_dist_size();
    t.rank = bl_dist_rank();
    /* checkpoints count micro-batches over all ranks: N ranks with --accum K resume as one with
     * --accum N·K and the reverse (the same sequences per step); only rank 0 writes them */
    bl_distill_opts ck = t.o;
    ck.accum *= t.ranks;
    const bool writes = t.rank == 0;
    t.teacher_path = teacher->path ? teacher->path : "teacher";
    t.student_path = student->path ? student->path : "student";
    bl_status s = check_opts(&t.o, teacher, student, data, err);
    if (!s) s = trainer_init(&t, teacher, student, err);
    int last_ckpt = -1;
    if (!s && t.o.resume) {
        s = tr_checkpoint_load(outdir, t.S, t.PS, t.m, t.v, &t.st, &ck, err);
        if (!s) s = nn_model_sync_signs_f32(t.S, t.PS, err);
        if (!s) {
            last_ckpt = t.st.step;
            note(&t.o, "resumed from step %d of %s/checkpoint", t.st.step, outdir);
        }
    } else if (!s) {
        s = eval_loss(&t, &t.st.loss_before, &t.st.ce_before, &t.st.mse_before,
                      "loss before training", err);
    }
    res->start_step = t.st.step;
    const double t0 = bl_time_s(), sec0 = t.st.seconds;
    const int64_t tok0 = t.st.tokens;
    for (int step = t.st.step; step < t.o.steps && !s; step++) {
        bl_distill_progress pr = {0};
        s = train_step(&t, step, &pr, err);
        if (s) break;
        const double el = bl_time_s() - t0;
        t.st.seconds = sec0 + el;
        res->steps_done++;
        pr.step = t.st.step;
        pr.steps = t.o.steps;
        pr.tokens = t.st.tokens;
        pr.elapsed_s = t.st.seconds;
        pr.tok_per_s = el > 0 ? (double)(t.st.tokens - tok0) / el : 0;
        pr.eta_s = el / res->steps_done * (t.o.steps - t.st.step);
        pr.flips = t.st.flips;
        if (t.o.on_step) t.o.on_step(t.o.on_step_ctx, &pr);
        if (t.o.save_every > 0 && t.st.step % t.o.save_every == 0 && t.st.step < t.o.steps) {
            if (writes) s = tr_checkpoint_save(outdir, t.S, t.PS, t.m, t.v, &t.st, &ck, err);
            if (!s) last_ckpt = t.st.step;
        }
        if (!s && t.o.stop_after > 0 && t.st.step == t.o.stop_after && t.st.step < t.o.steps) {
            res->stopped = true;
            note(&t.o, "stopped after step %d (--stop-after)", t.st.step);
            break;
        }
    }
    if (s == BL_ERR_NUMERIC && err) {
        char tail[160];
        if (last_ckpt >= 0)
            snprintf(tail, sizeof tail, "; stopped, the last good checkpoint (step %d) is kept in "
                     "%s/checkpoint", last_ckpt, outdir);
        else
            snprintf(tail, sizeof tail, "; stopped before any checkpoint was written");
        size_t n = strlen(err->msg);
        snprintf(err->msg + n, sizeof err->msg - n, "%s", tail);
    }
    if (!s && !res->stopped) {
        if (writes) s = tr_checkpoint_save(outdir, t.S, t.PS, t.m, t.v, &t.st, &ck, err);
        if (!s)
            s = eval_loss(&t, &res->loss_after, &res->ce_after, &res->mse_after,
                          "loss after training", err);
        char *prov = s || !writes ? NULL : provenance_json(&t, teacher, student);
        if (!s && writes)
            s = tr_export(t.S, t.PS, student, t.o.export_dir ? t.o.export_dir : outdir,
                          student->quant_method, prov, err);
        free(prov);
    }
    res->tokens = t.st.tokens;
    res->seconds = t.st.seconds;
    res->loss_before = t.st.loss_before;
    res->ce_before = t.st.ce_before;
    res->mse_before = t.st.mse_before;
    res->flips = t.st.flips;
    trainer_free(&t);
    return s;
}

bl_status bl_distill(const bl_model *teacher, const bl_model *student,
                     const bl_train_data *data, const char *outdir, const bl_distill_opts *opts,
                     bl_distill_result *res, bl_err *err) {
    /* The training engine's parallel loops are OpenMP regions started by this thread: they take
     * the thread count set here, and the products they call run on the same OpenMP threads. */
    const int prev = bl_omp_threads_begin(opts->n_threads);
    bl_status s = distill_run(teacher, student, data, outdir, opts, res, err);
    bl_omp_threads_end(prev);
    return s;
}
