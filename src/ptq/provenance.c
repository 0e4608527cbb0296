/* Provenance: what a quantized checkpoint was made from and with which recipe, written into
 * config.json's quantization_config.provenance by the one writer below and read back from the
 * written file by whoever reports on it (bitllm compare). */
#include "ptq/ptq_internal.h"

#include <stdio.h>
#include <stdlib.h>

/* Block reconstruction ran: calibration data and a method it trains. */
static bool calibrated_any(const bl_quant_opts *o) {
    return o->calib_ids && o->n_calib > 0 && bl_recon_supports(&o->method);
}

cJSON *ptq_provenance(const bl_model *src, const bl_quant_opts *o) {
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "source", src->path);
    char name[64];
    bl_method_name(&o->method, name, sizeof name);
    cJSON_AddStringToObject(p, "method", name);
    if (o->embed) cJSON_AddStringToObject(p, "embed", o->embed); /* only when asked: default */
    if (o->head) cJSON_AddStringToObject(p, "head", o->head);    /* files stay as they were */
    if (bl_method_uses(&o->method, false, BL_QP_BPW)) {
        if (o->bpw > 0) bl_json_add_exact(p, "bpw_target", o->bpw); /* read back exactly */
        else cJSON_AddStringToObject(p, "bpw_target", bl_bpw_keyword());
    }
    /* the format parameters that an option sets, under the option's name */
    const bl_format_ops *f = o->method.format;
    for (int i = 0; i < f->n_params; i++)
        if (f->params[i].flag >= 0 &&
            bl_method_uses(&o->method, false, (bl_qparam)f->params[i].flag))
            cJSON_AddNumberToObject(p, bl_qparam_name((bl_qparam)f->params[i].flag),
                                    (double)bl_format_param_get(&f->params[i], &o->method.params));
    if (bl_method_uses(&o->method, false, BL_QP_SVID))
        cJSON_AddStringToObject(p, "svid", o->fit.nmf ? "nmf" : "svd");
    if (o->random_factors) cJSON_AddBoolToObject(p, "random_factors", true);
    if (o->allocate) cJSON_AddBoolToObject(p, "allocate", true);
    bl_json_add_u64(p, "seed", o->fit.seed);
    cJSON_AddNumberToObject(p, "iters", o->fit.iters);
    if (o->fit.max_iters > 0) cJSON_AddNumberToObject(p, "max_iters", o->fit.max_iters);
    if (o->fit.tol > 0) bl_json_add_exact(p, "tol", o->fit.tol);
    cJSON_AddNumberToObject(p, "calib_tokens", (double)o->n_calib);
    const bool calibrated = o->calib_ids && o->n_calib > 0 &&
                            bl_method_uses(&o->method, false, BL_QP_CALIB);
    if (calibrated && bl_method_uses(&o->method, false, BL_QP_ACTIVATION_AWARE))
        cJSON_AddStringToObject(p, "fit_metric", o->activation_aware ? "hessian" : "diag");
    cJSON_AddBoolToObject(p, "gradient_importance",
                          o->out_importance != NULL || (calibrated && o->grad_importance));
    if (o->calib_source && o->n_calib > 0) cJSON_AddStringToObject(p, "calib", o->calib_source);
    if (o->calib_ids && o->n_calib > 0) {
        cJSON_AddNumberToObject(p, "calib_seq", o->calib_ctx);
        if (o->calib_rows) cJSON_AddBoolToObject(p, "calib_generated", true);
    }
    if (o->recon.block && calibrated_any(o)) {
        cJSON *r = cJSON_AddObjectToObject(p, "reconstruct");
        cJSON_AddStringToObject(r, "mode", "block");
        cJSON_AddStringToObject(r, "target", o->recon.target_quant ? "quant" : "fp");
        cJSON_AddNumberToObject(r, "epochs", o->recon.epochs);
        cJSON_AddNumberToObject(r, "batch", o->recon.batch);
        bl_json_add_exact(r, "lr", o->recon.lr);
        bl_json_add_exact(r, "sign_lr", o->recon.sign_lr);
        bl_json_add_exact(r, "flip_frac", o->recon.flip_frac);
        if (o->recon.calibrate_scales) {
            cJSON_AddNumberToObject(r, "scale_epochs", o->recon.kl_epochs);
            bl_json_add_exact(r, "scale_lr", o->recon.kl_lr);
        }
    }
    if (o->n_stages > 0) {
        cJSON *st = cJSON_AddArrayToObject(p, "stages");
        for (int i = 0; i < o->n_stages; i++)
            cJSON_AddItemToArray(st, cJSON_CreateString(o->stages[i].name));
    }
    if (o->provenance) cJSON_AddStringToObject(p, "command", o->provenance);
    return p;
}

bl_status bl_quant_provenance(const char *model_dir, char **json, bl_err *err) {
    *json = NULL;
    char path[4200], *text;
    size_t len;
    snprintf(path, sizeof path, "%s/config.json", model_dir);
    bl_status s = bl_read_file(path, &text, &len, err);
    if (s) return s;
    cJSON *cfg = bl_json_parse(text, len, NULL);
    free(text);
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cfg, "quantization_config"), "provenance");
    if (!cJSON_IsObject(p)) s = bl_fail(err, BL_ERR_FORMAT, "%s: no quantization_config."
                                        "provenance object", path);
    else if (!(*json = cJSON_PrintUnformatted(p))) s = bl_fail(err, BL_ERR_NOMEM, "out of memory");
    cJSON_Delete(cfg);
    return s;
}
