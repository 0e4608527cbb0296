/* Calibration and reconstruction flags of quantize and compare (cli_calib.h). */
#include "cli_calib.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void cli_calib_defaults(cli_calib_flags *f) {
    memset(f, 0, sizeof *f);
    f->calib_tokens = 16384;
    f->calib_seq = 256;
    bl_quant_opts q; /* the recipe's defaults are the library's */
    bl_quant_opts_default(&q);
    f->epochs = q.recon.epochs;
    f->batch = q.recon.batch;
    f->lr = q.recon.lr;
    f->sign_lr = q.recon.sign_lr;
    f->scale_epochs = q.recon.kl_epochs;
    f->scale_lr = q.recon.kl_lr;
}

/* "123", "64K", "512M", "2G" (powers of 1024); false when malformed or zero. */
static bool parse_size(const char *s, uint64_t *out) {
    char *end;
    const double v = strtod(s, &end);
    double mul = 1;
    if (*end == 'K' || *end == 'k') mul = 1024.0, end++;
    else if (*end == 'M' || *end == 'm') mul = 1048576.0, end++;
    else if (*end == 'G' || *end == 'g') mul = 1073741824.0, end++;
    else if (*end == 'T' || *end == 't') mul = 1099511627776.0, end++;
    if (end == s || *end || !(v > 0) || !isfinite(v) || v * mul >= 1.8e19) return false;
    *out = (uint64_t)(v * mul);
    return *out > 0;
}

/* The formats block reconstruction trains, for messages ("onebit, dbf, ..."). */
static void recon_formats(char *buf, size_t cap) {
    int n;
    const bl_format_ops *const *all = bl_format_list(&n);
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < n && k < cap; i++) {
        bl_method mm;
        memset(&mm, 0, sizeof mm);
        mm.format = all[i];
        if (!bl_recon_supports(&mm)) continue;
        int w = snprintf(buf + k, cap - k, "%s%s", k ? ", " : "", all[i]->name);
        if (w < 0) break;
        k += (size_t)w;
    }
}

int cli_calib_apply(const char *cmd, const cli_spec *spec, const cli_calib_flags *f,
                    const bl_model *m, const bl_method *methods, int n_methods,
                    bl_calib_data *d, bl_quant_opts *o) {
    memset(d, 0, sizeof *d);
    const bool data = f->calib || f->calib_generate > 0;
    if (f->calib && f->calib_generate > 0)
        return cli_errorf(cmd, "--calib and --calib-generate are exclusive"), 2;
    if (f->calib_seq > m->cfg.max_seq)
        return cli_errorf(cmd, "--calib-seq %d exceeds the model's context of %d tokens",
                          f->calib_seq, m->cfg.max_seq), 2;
    bool block;
    if (!f->reconstruct || !strcmp(f->reconstruct, "block")) block = true;
    else if (!strcmp(f->reconstruct, "none")) block = false;
    else return cli_errorf(cmd, "--reconstruct must be block or none, got '%s'", f->reconstruct), 2;
    if (f->target && strcmp(f->target, "fp") && strcmp(f->target, "quant"))
        return cli_errorf(cmd, "--recon-target must be fp or quant, got '%s'", f->target), 2;
    bool any_recon = false;
    char trained[128], users[256];
    recon_formats(trained, sizeof trained);
    bl_qparam_users(BL_QP_CALIB, false, users, sizeof users);
    for (int i = 0; i < n_methods; i++) {
        const bool can = bl_recon_supports(&methods[i]);
        char name[64];
        bl_method_name(&methods[i], name, sizeof name);
        if (block && f->reconstruct && data && !can && n_methods == 1)
            return cli_errorf(cmd, "--reconstruct block trains %s layers, not %s", trained,
                              name), 2;
        if (data && n_methods == 1 && !(block && can) &&
            !bl_method_uses(&methods[i], false, BL_QP_CALIB))
            return cli_errorf(cmd, "--%s is not used by -m %s (used by: %s)",
                              f->calib ? "calib" : "calib-generate", name, users), 2;
        any_recon |= block && can && data;
    }
    static const char *const recon_only[] = {"recon-target", "recon-epochs", "recon-batch",
                                             "recon-lr", "recon-sign-lr", "calibrate-scales",
                                             "mem"};
    for (size_t i = 0; i < sizeof recon_only / sizeof recon_only[0]; i++)
        if (cli_given(spec, recon_only[i]) && !any_recon)
            return cli_errorf(cmd, "--%s needs block reconstruction (calibration data, a method "
                              "of %s and --reconstruct block)", recon_only[i], trained), 2;
    if (cli_given(spec, "reconstruct") && !data)
        return cli_errorf(cmd, "--reconstruct needs calibration data (--calib or "
                          "--calib-generate)"), 2;
    if (cli_given(spec, "calib-seq") && !data)
        return cli_errorf(cmd, "--calib-seq needs calibration data (--calib or "
                          "--calib-generate)"), 2;
    uint64_t mem = 0;
    if (f->mem && !parse_size(f->mem, &mem))
        return cli_errorf(cmd, "--mem must be a size such as 512M or 2G, got '%s'", f->mem), 2;
    o->calib_ctx = f->calib_seq;
    o->grad_importance = !f->no_grad;
    o->recon.block = any_recon;
    o->recon.target_quant = f->target && !strcmp(f->target, "quant");
    o->recon.epochs = f->epochs;
    o->recon.batch = f->batch;
    o->recon.lr = f->lr;
    o->recon.sign_lr = f->sign_lr;
    o->recon.mem_limit = mem;
    o->recon.calibrate_scales = f->calibrate_scales;
    o->recon.kl_epochs = f->scale_epochs;
    o->recon.kl_lr = f->scale_lr;
    o->recon.on_block = cli_recon_on_block;
    o->recon.on_progress = cli_recon_on_progress;
    if (!data) return 0;
    bl_err err = {0};
    bl_status s;
    if (f->calib) {
        s = bl_calib_data_load(m, f->calib, d, &err);
    } else {
        cli_progress pr;
        cli_progress_start(&pr, "generating calibration sequences");
        s = bl_calib_data_generate(m, f->calib_generate, f->calib_seq, o->fit.seed,
                                   cli_progress_cb, &pr, d, &err);
        cli_progress_done(&pr);
    }
    if (s) return cli_error(cmd, &err);
    o->calib_ids = d->ids;
    o->n_calib = d->rows || d->n < (size_t)f->calib_tokens ? d->n : (size_t)f->calib_tokens;
    o->calib_rows = d->rows;
    o->calib_source = f->calib ? f->calib : "generated";
    const size_t body = (size_t)f->calib_seq - (bl_model_adds_bos(m) && !d->rows ? 1 : 0);
    if (any_recon && o->n_calib / body == 0)
        return cli_errorf(cmd, "%zu calibration tokens do not fill one sequence of %d",
                          o->n_calib, f->calib_seq), 2;
    fprintf(stderr, "calibration: %s; using %zu tokens%s", d->what, o->n_calib,
            any_recon ? "" : "\n");
    if (any_recon)
        fprintf(stderr, " as %zu sequences of %d\n", o->n_calib / body, f->calib_seq);
    return 0;
}

cJSON *cli_recon_block_json(const bl_recon_block *b) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "block", b->block);
    cJSON_AddNumberToObject(j, "loss_before", b->loss_before);
    cJSON_AddNumberToObject(j, "loss_after", b->loss_after);
    cJSON_AddNumberToObject(j, "rel_before", b->rel_before);
    cJSON_AddNumberToObject(j, "rel_after", b->rel_after);
    cJSON_AddNumberToObject(j, "steps", b->steps);
    cJSON_AddNumberToObject(j, "flips", (double)b->flips);
    cJSON_AddBoolToObject(j, "reverted", b->reverted);
    cJSON_AddBoolToObject(j, "resumed", b->resumed);
    cJSON_AddNumberToObject(j, "seconds", b->seconds);
    cJSON_AddNumberToObject(j, "fit_seconds", b->fit_s);
    cJSON_AddNumberToObject(j, "forward_seconds", b->forward_s);
    cJSON_AddNumberToObject(j, "backward_seconds", b->backward_s);
    return j;
}

void cli_calib_json(cJSON *j, const bl_quant_opts *o, const bl_calib_data *d) {
    if (!o->calib_ids) return;
    cJSON *c = cJSON_AddObjectToObject(j, "calibration");
    cJSON_AddStringToObject(c, "source", o->calib_source ? o->calib_source : "");
    cJSON_AddStringToObject(c, "data", d->what);
    cJSON_AddNumberToObject(c, "tokens", (double)o->n_calib);
    cJSON_AddNumberToObject(c, "seq", o->calib_ctx);
    cJSON_AddStringToObject(c, "reconstruct", o->recon.block ? "block" : "none");
}

void cli_recon_on_block(void *ctx, const bl_recon_block *b) {
    fprintf(stderr, "block %d/%d %s: output MSE %.4g -> %.4g (relative %.4f -> %.4f)%s, %d "
                    "steps, %lld sign flips, %.1fs (fit %.1fs, forward %.1fs, backward %.1fs)\n",
            b->block + 1, b->blocks, b->resumed ? "(resumed)" : "done", b->loss_before,
            b->loss_after, b->rel_before, b->rel_after,
            b->reverted ? " [training did not help: initial fit kept]" : "", b->steps,
            (long long)b->flips, b->seconds, b->fit_s, b->forward_s, b->backward_s);
    if (ctx) cJSON_AddItemToArray((cJSON *)ctx, cli_recon_block_json(b));
}

void cli_recon_on_progress(void *ctx, const char *what, int done, int total, double eta_s) {
    (void)ctx;
    fprintf(stderr, "  %s: step %d/%d (ETA %dm%02ds)\n", what, done, total, (int)eta_s / 60,
            (int)eta_s % 60);
}
