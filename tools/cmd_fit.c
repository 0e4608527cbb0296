/* bitllm fit: one matrix (a .npy file or a model's tensor) fitted with one method and measured. */
#include <cblas.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bitllm/quantize.h"
#include "cli.h"
#include "cli_util.h"

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* A 1-D importance vector of exactly `len` values (a 2-D 1×len or len×1 array is accepted too). */
static float *read_importance(const char *path, int64_t len, const char *what) {
    bl_err err = {0};
    bl_npy_header h;
    float *v;
    if (bl_npy_read_f32(path, &v, &h, &err) != BL_OK) {
        cli_error("fit", &err);
        return NULL;
    }
    if ((int64_t)h.numel != len || h.ndim < 1 || h.ndim > 2 ||
        (h.ndim == 2 && h.shape[0] != 1 && h.shape[1] != 1)) {
        cli_errorf("fit", "%s: %s importance must be a vector of %lld values (one per %s), not "
                          "%llu values in %d dimensions",
                   path, what, (long long)len, strcmp(what, "input") ? "output row" : "input column",
                   (unsigned long long)h.numel, h.ndim);
        free(v);
        return NULL;
    }
    for (int64_t i = 0; i < len; i++)
        if (!isfinite(v[i]) || v[i] < 0.0f) {
            cli_errorf("fit", "%s: value %lld is %g; importances must be finite and >= 0", path,
                       (long long)i, (double)v[i]);
            free(v);
            return NULL;
        }
    return v;
}

/* An activation covariance H = XᵀX/N: n×n, finite, symmetric (to 1e-4 of its largest entry) with
 * a non-negative diagonal. */
static float *read_hessian(const char *path, int64_t n) {
    bl_err err = {0};
    bl_npy_header h;
    float *H;
    if (bl_npy_read_f32(path, &H, &h, &err) != BL_OK) {
        cli_error("fit", &err);
        return NULL;
    }
    if (h.ndim != 2 || h.shape[0] != n || h.shape[1] != n) {
        cli_errorf("fit", "%s: H must be a %lld x %lld matrix (one row and column per input), not "
                          "%llu values in %d dimensions",
                   path, (long long)n, (long long)n, (unsigned long long)h.numel, h.ndim);
        free(H);
        return NULL;
    }
    double amax = 0.0;
    for (int64_t i = 0; i < n * n; i++) {
        if (!isfinite(H[i])) {
            cli_errorf("fit", "%s: element %lld is not finite", path, (long long)i);
            free(H);
            return NULL;
        }
        amax = fmax(amax, fabs(H[i]));
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j <= i; j++) {
            if (i == j && H[i * n + i] < 0.0f) {
                cli_errorf("fit", "%s: diagonal element %lld is %g; H = XᵀX/N has a "
                                  "non-negative diagonal", path, (long long)i, (double)H[i * n + i]);
                free(H);
                return NULL;
            }
            if (fabs((double)H[i * n + j] - H[j * n + i]) > 1e-4 * amax) {
                cli_errorf("fit", "%s: H is not symmetric (H[%lld][%lld] = %g, H[%lld][%lld] = %g)",
                           path, (long long)i, (long long)j, (double)H[i * n + j], (long long)j,
                           (long long)i, (double)H[j * n + i]);
                free(H);
                return NULL;
            }
        }
    return H;
}

int cmd_fit(int argc, char **argv) {
    const char *tensor = NULL, *method = "dbf", *bpw_s = NULL, *imp_in = NULL, *imp_out = NULL,
               *out = NULL, *tokp = NULL, *hess = NULL;
    bool json = false, svd = false;
    int mid = 0, rank_l = 1, paths = 1, iters = 0, max_iters = 0, group = 128, threads = 0,
        h_rank = 0;
    double tol = 0.0;
    uint64_t seed = 0;
    char bpw_help[128];
    snprintf(bpw_help, sizeof bpw_help, "target bpw incl. FP16 vectors, or '%s' (default: %s's "
             "cost for the shape)", bl_bpw_keyword(), bl_bpw_keyword());
    const cli_opt opts[] = {
        {"tensor", 0, OPT_STR, &tensor, "NAME", "with MODEL: the matrix to fit, e.g. "
                                                "model.layers.3.mlp.down_proj.weight", CLI_ANY},
        {"method", 'm', OPT_STR, &method, "M", "format[:key=value,...] as in quantize; `bitllm formats` lists them (default dbf)",
         CLI_ANY},
        {"bpw", 0, OPT_STR, &bpw_s, "B", bpw_help, USES(BL_QP_BPW)},
        {"mid", 0, OPT_INT, &mid, "K", "middle dimension (instead of --bpw)",
         CLI_RANGE(1, (double)BL_MAX_MID), USES(BL_QP_BPW)},
        {"envelope-rank", 0, OPT_INT, &rank_l, "L", "envelope rank l (default 1)",
         CLI_RANGE(1, 1024), USES(BL_QP_ENVELOPE_RANK)},
        {"paths", 0, OPT_INT, &paths, "P", "paths P (default 1)", CLI_RANGE(1, 64),
         USES(BL_QP_PATHS)},
        {"iters", 0, OPT_INT, &iters, "N", "exactly N ADMM iterations (default: stop "
                                           "on convergence)", CLI_MIN(1), USES(BL_QP_ITERS)},
        {"max-iters", 0, OPT_INT, &max_iters, "N", "cap of the convergence stop (default 260)",
         CLI_RANGE(1, 1000000), USES(BL_QP_ITERS)},
        {"tol", 0, OPT_FLOAT, &tol, "T", "convergence: relative improvement per 10 iterations "
                                         "(default 1e-3)", CLI_RANGE_LO_OPEN(0.0, 1.0),
         USES(BL_QP_ITERS)},
        {"group", 0, OPT_INT, &group, "G", "group size, 64..128 (default: the method's)",
         CLI_RANGE(64, 128), USES(BL_QP_GROUP)},
        {"svd", 0, OPT_FLAG, &svd, NULL, "SVID rank-1 by SVD (default NMF)",
         USES(BL_QP_SVID)},
        {"seed", 0, OPT_U64, &seed, "S", "random seed (default 0)", USES(BL_QP_SEED)},
        {"importance", 0, OPT_STR, &imp_in, "FILE.npy",
         "per-input-column importance (n values, e.g. mean x²): weights the fit of the formats "
         "that read it and the reported weighted error",
         CLI_ANY},
        {"hessian", 0, OPT_STR, &hess, "FILE.npy",
         "input covariance H = XᵀX/N (n×n): the binary fits minimize the output error "
         "tr(E·H·Eᵀ), and the weighted error reported is that one (H's diagonal stands for "
         "--importance, which it excludes)", CLI_ANY},
        {"hessian-rank", 0, OPT_INT, &h_rank, "K",
         "H's correlations as diagonal plus rank K (default: full up to 4096 inputs, rank "
         "256 beyond)", CLI_RANGE(1, 1 << 20), .needs = "hessian",
         USES(BL_QP_ITERS)},
        {"out-importance", 0, OPT_STR, &imp_out, "FILE.npy", "per-output-row importance (m "
                                                             "values)", CLI_ANY},
        {"out", 'o', OPT_STR, &out, "W_HAT.npy", "write the reconstruction Ŵ (float32, m×n)",
         CLI_ANY},
        {"tokenizer", 0, OPT_STR, &tokp, "FILE", "tokenizer for llama2.c checkpoints", CLI_ANY},
        {"threads", 't', OPT_INT, &threads, "T",
         "threads (default: OMP_NUM_THREADS or all cores; the result does not depend on it)",
         CLI_THREADS},
        {"json", 0, OPT_FLAG, &json, NULL, "print one JSON object on stdout", CLI_ANY},
    };
    uint64_t given = 0;
    const cli_spec spec = {"fit", "FILE.npy | MODEL --tensor NAME",
                           "Fit one matrix (a float32/float16 2-D .npy file, or a tensor of a "
                           "model) with one method and print its relative error, the "
                           "importance-weighted error, the bits per weight it stores, iterations "
                           "and time. An option the method does not use is an error.",
                           opts, (int)(sizeof opts / sizeof opts[0]), 1, 1, &given};
    const char *pos[1];
    int np, r = cli_parse(&spec, argc, argv, pos, &np);
    if (r != CLI_OK) return cli_exit_code(r);
    bl_layer_fit_opts o;
    bl_layer_fit_opts_default(&o);
    if (cli_method("fit", &spec, method, false, &o.method)) return 2;
    bl_err perr;
    if (bpw_s && bl_bpw_parse(bpw_s, 64.0, &o.bpw, &perr)) return cli_error("fit", &perr), 2;
    if (bpw_s && mid) {
        cli_errorf("fit", "--mid and --bpw both set the middle dimension; give one");
        return 2;
    }
    if (group != 64 && group != 128) {
        cli_errorf("fit", "--group must be 64 or 128, got %d", group);
        return 2;
    }
    const bool npy = ends_with(pos[0], ".npy");
    if (npy && tensor) return cli_errorf("fit", "--tensor names a tensor of a MODEL, not of a .npy");
    if (!npy && !tensor)
        return cli_errorf("fit", "%s: give a .npy file, or a MODEL with --tensor NAME", pos[0]);
    if (hess && imp_in) {
        cli_errorf("fit", "--hessian and --importance both weight the inputs; give one (H's "
                          "diagonal is the input importance)");
        return 2;
    }
    if (out) { /* never onto an input: the matrix, the model, the importance and H files */
        const char *inputs[] = {pos[0], imp_in, imp_out, tokp, hess};
        const char *in[5];
        int n_in = 0;
        for (int i = 0; i < 5; i++)
            if (inputs[i]) in[n_in++] = inputs[i];
        bl_err oerr = {0};
        if (bl_output_file_check(out, in, n_in, &oerr) != BL_OK) return cli_error("fit", &oerr);
    }
    if (mid) o.method.params.mid = mid; /* --mid is only accepted where --bpw is */
    o.fit.seed = seed;
    o.n_threads = threads;
    o.fit.iters = iters;
    o.fit.max_iters = max_iters;
    o.fit.tol = tol;
    o.fit.nmf = !svd;

    int rc = 1;
    bl_model *model = NULL;
    float *W = NULL, *ii = NULL, *oi = NULL, *What = NULL, *H = NULL;
    int64_t m = 0, n = 0;
    bl_err err = {0};
    bl_linear L = {0};
    if (npy) {
        bl_npy_header h;
        if (bl_npy_read_f32(pos[0], &W, &h, &err) != BL_OK) {
            cli_error("fit", &err);
            goto done;
        }
        if (h.ndim != 2 || h.shape[0] < 1 || h.shape[1] < 1) {
            cli_errorf("fit", "%s: expected a 2-D array with at least one row and column, got %d "
                              "dimensions", pos[0], h.ndim);
            goto done;
        }
        m = h.shape[0];
        n = h.shape[1];
    } else {
        if (!(model = cli_load_model(pos[0], tokp))) goto done;
        if (bl_model_matrix(model, tensor, &W, &m, &n, &err) != BL_OK) {
            cli_error("fit", &err);
            goto done;
        }
    }
    for (int64_t i = 0; i < m * n; i++)
        if (!isfinite(W[i])) {
            cli_errorf("fit", "%s: element %lld is not finite", tensor ? tensor : pos[0],
                       (long long)i);
            goto done;
        }
    if (imp_in && !(ii = read_importance(imp_in, n, "input"))) goto done;
    if (imp_out && !(oi = read_importance(imp_out, m, "output"))) goto done;
    if (hess && !(H = read_hessian(hess, n))) goto done;
    o.fit.in_importance = ii;
    o.fit.out_importance = oi;
    o.fit.H = H;
    o.fit.H_rank = h_rank;
    const char *label = tensor ? tensor : pos[0];
    if (bl_layer_fit_check(&o, m, n, label, &err) != BL_OK) {
        cli_error("fit", &err);
        goto done;
    }
    fprintf(stderr, "fitting %s (%lld x %lld) with %s", label, (long long)m, (long long)n, method);
    if (o.method.format->mid_from_bpw && o.method.params.mid)
        fprintf(stderr, ", middle %lld (--mid)", (long long)bl_layer_mid(&o, m, n));
    else if (o.method.format->mid_from_bpw)
        fprintf(stderr, ", middle %lld (target %.4f bpw)", (long long)bl_layer_mid(&o, m, n),
                bl_layer_target_bpw(&o, m, n));
    fputc('\n', stderr);
    cli_progress prog;
    cli_progress_start(&prog, "fit");
    o.fit.progress = cli_progress_cb;
    o.fit.progress_ctx = &prog;
    bl_layer_fit_result *res = calloc(1, sizeof *res);
    if (!res) {
        cli_errorf("fit", "out of memory");
        goto done;
    }
    bl_status s = bl_fit_layer(W, m, n, &o, &L, res, &err);
    cli_progress_done(&prog);
    if (s != BL_OK) {
        cli_error("fit", &err);
        free(res);
        goto done;
    }
    fprintf(stderr, "bpw %.4f  rel_err %.5f", res->bpw, res->rel_err);
    if (ii || oi || H)
        fprintf(stderr, "  %s rel_err %.5f", H ? "H-weighted" : "weighted", res->wrel_err);
    if (res->iters > 0)
        fprintf(stderr, "  %d iterations (%s)", res->iters,
                res->trace.paths_converged == (o.method.params.paths > 0 ? o.method.params.paths : 1)
                    ? "converged"
                : iters > 0                           ? "fixed count"
                                                      : "cap reached");
    /* the BLAS kernels set the speed: OPENBLAS_CORETYPE may select slower ones than the CPU's */
    const char *blas_fallback = bl_blas_fallback_core();
    fprintf(stderr, "  %.2f s wall, %.2f s CPU (BLAS core %s%s%s)\n", res->seconds,
            res->cpu_seconds, openblas_get_corename(),
            blas_fallback ? "; OpenBLAS's own choice was " : "", blas_fallback ? blas_fallback : "");
    if (out) {
        int64_t shape[2] = {m, n};
        What = malloc(sizeof(float) * (size_t)m * (size_t)n);
        if (!What) {
            cli_errorf("fit", "out of memory for the reconstruction");
            free(res);
            goto done;
        }
        if (L.ops->to_dense(&L, What, &err) != BL_OK ||
            bl_npy_write_f32(out, What, 2, shape, &err) != BL_OK) {
            cli_error("fit", &err);
            free(res);
            goto done;
        }
        fprintf(stderr, "wrote %s\n", out);
    }
    if (json) {
        cJSON *j = cli_layer_fit_json(res);
        cJSON_AddStringToObject(j, "source", pos[0]);
        if (tensor) cJSON_AddStringToObject(j, "tensor", tensor);
        cJSON *sh = cJSON_AddArrayToObject(j, "shape");
        cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)m));
        cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)n));
        cJSON_AddStringToObject(j, "method", method);
        cJSON_AddStringToObject(j, "blas_core", openblas_get_corename());
        if (blas_fallback) cJSON_AddStringToObject(j, "blas_fallback", blas_fallback);
        if (o.method.format->mid_from_bpw && !o.method.params.mid)
            cJSON_AddNumberToObject(j, "bpw_target", bl_layer_target_bpw(&o, m, n));
        cli_method_params_json(&o.method, j);
        cJSON_AddNumberToObject(j, "seed", (double)seed);
        cJSON_AddStringToObject(j, "blas", openblas_get_config());
        if (out) cJSON_AddStringToObject(j, "out", out);
        cli_print_json(j);
    }
    free(res);
    rc = 0;
done:
    bl_linear_free(&L);
    free(W);
    free(ii);
    free(oi);
    free(H);
    free(What);
    bl_model_free(model);
    return rc;
}
