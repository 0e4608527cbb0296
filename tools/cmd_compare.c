/* bitllm compare: one model quantized with a matrix of methods × bpw targets, each result measured
 * by WikiText-2 perplexity and the zero-shot tasks, one JSON line per run appended to
 * DIR/results.jsonl, then DIR/report.md and the ppl-vs-bpw plot (bitllm report DIR). */
#include <cblas.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <omp.h>

#include "bitllm/quantize.h"
#include "cli.h"
#include "cli_calib.h"
#include "cli_util.h"
#include "cmd_eval.h"

typedef struct {
    bl_method method;
    bool fp;
    double bpw; /* target of a format sized by bpw; 0 = match onebit per layer */
    char label[48];
} run_spec;

/* Splits a comma list into runs: FP first, then each method; a format sized by bpw once per bpw
 * target, the other methods once (their cost is fixed). Returns the count or -1 (error printed). */
static int plan_runs(const char *methods, const char *bpws, bool fp, const cli_spec *spec,
                     run_spec *runs, int cap) {
    int n = 0;
    if (fp) {
        runs[n] = (run_spec){.fp = true};
        snprintf(runs[n++].label, sizeof runs[0].label, "fp");
    }
    char mbuf[256], bbuf[256];
    snprintf(mbuf, sizeof mbuf, "%s", methods);
    /* a comma starts the next method unless what follows is a key=value of a spec's list */
    for (char *p = mbuf; (p = strchr(p, ',')); p++) {
        const char *next = p + 1, *eq = strchr(next, '='), *end = strpbrk(next, ",:");
        if (!(eq && (!end || eq < end))) *p = ';';
    }
    for (char *save = NULL, *m = strtok_r(mbuf, ";", &save); m; m = strtok_r(NULL, ";", &save)) {
        bl_method q;
        bl_err err;
        if (bl_method_parse(m, &q, &err) != BL_OK) return cli_error("compare", &err), -1;
        if (cli_method_flags("compare", spec, m, &q)) return -1;
        if (!bl_method_uses(&q, false, BL_QP_BPW)) {
            if (n == cap) return cli_errorf("compare", "too many runs"), -1;
            runs[n] = (run_spec){.method = q};
            snprintf(runs[n++].label, sizeof runs[0].label, "%s", m);
            continue;
        }
        snprintf(bbuf, sizeof bbuf, "%s", bpws);
        for (char *s2 = NULL, *b = strtok_r(bbuf, ",", &s2); b; b = strtok_r(NULL, ",", &s2)) {
            double v = 0;
            if (bl_bpw_parse(b, 16.0, &v, &err)) return cli_error("compare", &err), -1;
            if (n == cap) return cli_errorf("compare", "too many runs"), -1;
            runs[n] = (run_spec){.method = q, .bpw = v};
            snprintf(runs[n++].label, sizeof runs[0].label, "%s-%s", m, b);
        }
    }
    if (n == 0) cli_errorf("compare", "nothing to run");
    return n ? n : -1;
}

/* Where a run happened: quantized rows depend on the BLAS/LAPACK build, the CPU and the thread
 * count (the fits are deterministic for a given seed only on one setup). */
static cJSON *host_info(void) {
    cJSON *h = cJSON_CreateObject();
    char cpu[256] = "";
    FILE *f = fopen("/proc/cpuinfo", "r");
    for (char line[512]; f && fgets(line, sizeof line, f);) {
        char *c = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && c) {
            snprintf(cpu, sizeof cpu, "%s", c + 2);
            cpu[strcspn(cpu, "\n")] = 0;
            break;
        }
    }
    if (f) fclose(f);
    cJSON_AddStringToObject(h, "cpu", cpu);
    cJSON_AddNumberToObject(h, "threads", omp_get_max_threads());
    cJSON_AddStringToObject(h, "blas", openblas_get_config());
    return h;
}

static int make_dir(const char *path) {
    if (mkdir(path, 0755) == 0 || errno == EEXIST) return 0;
    return cli_errorf("compare", "cannot create %s: %s", path, strerror(errno));
}

typedef struct {
    const char *model_path, *text, *calib_path, *cmdline, *tokp, *data;
    bl_ctx_choice ppl_ctx, eval_ctx;
    int iters, limit;
    uint64_t seed;
    size_t n_ids;
    const int32_t *ids;
    const bl_quant_opts *calib; /* calibration data and reconstruction, as quantize sets them */
    bl_eval_opts eo;
} compare_cfg;

/* Quantizes (unless FP), measures, and returns the JSON line of one run (NULL on error). */
static cJSON *run_one(const compare_cfg *c, const bl_model *fp, const run_spec *r,
                      const char *outdir, bool keep, bl_task_set *const *sets, int n_sets) {
    bl_err err = {0};
    const bl_model *m = fp;
    bl_model *q = NULL;
    bl_outdir *od = NULL;
    double tq = 0;
    cJSON *params = cJSON_CreateObject();
    if (!r->fp) {
        bl_quant_opts o;
        bl_quant_opts_default(&o);
        o.method = r->method;
        o.bpw = r->bpw;
        o.fit.seed = c->seed;
        o.fit.iters = c->iters;
        o.calib_ids = c->calib->calib_ids;
        o.n_calib = c->calib->n_calib;
        o.calib_ctx = c->calib->calib_ctx;
        o.calib_rows = c->calib->calib_rows;
        o.calib_source = c->calib->calib_source;
        o.grad_importance = c->calib->grad_importance;
        o.recon = c->calib->recon;
        o.recon.ctx = NULL;
        o.provenance = c->cmdline;
        fprintf(stderr, "quantizing with %s into %s\n", r->label, outdir);
        bl_quant_summary sum;
        const char *inputs[] = {c->model_path, c->tokp, c->calib_path, c->text, c->data};
        bl_outdir_opts oo = {.inputs = inputs, .n_inputs = 5, .command = "compare"};
        /* written beside DIR/models/LABEL; moved there with --keep, else removed after the run */
        if (bl_outdir_prepare(outdir, &oo, &od, &err) != BL_OK ||
            bl_quantize_model(fp, &o, bl_outdir_path(od), &sum, &err) != BL_OK ||
            bl_model_load(bl_outdir_path(od), &(bl_load_opts){.tokenizer_path = c->tokp}, &q,
                          &err) != BL_OK) {
            cli_error("compare", &err);
            cJSON_Delete(params);
            bl_outdir_abort(od);
            return NULL;
        }
        /* the run's parameters as the checkpoint records them (one writer: src/ptq) */
        char *prov = NULL;
        cJSON *pj = NULL;
        if (bl_quant_provenance(bl_outdir_path(od), &prov, &err) != BL_OK ||
            !(pj = cJSON_Parse(prov))) {
            if (prov) bl_fail(&err, BL_ERR_FORMAT, "%s: unreadable provenance", outdir);
            cli_error("compare", &err);
            free(prov);
            cJSON_Delete(params);
            bl_model_free(q);
            bl_outdir_abort(od);
            return NULL;
        }
        free(prov);
        cJSON_Delete(params);
        params = pj;
        tq = sum.seconds;
        m = q;
    }
    double bpw_layers, bpw_model;
    bl_model_bpw(m, &bpw_layers, &bpw_model);
    bl_ppl_result pr;
    cli_progress prog;
    char label[96];
    snprintf(label, sizeof label, "ppl (%zu tokens, ctx %d)", c->n_ids, c->ppl_ctx.ctx);
    cli_progress_start(&prog, label);
    bl_task_result res[BL_TASK_COUNT];
    cJSON *line = NULL;
    if (bl_perplexity(m, c->ids, c->n_ids, c->ppl_ctx.ctx, 128, cli_progress_cb, &prog, &pr,
                      &err)) {
        fprintf(stderr, "\n");
        cli_error("compare", &err);
    } else {
        cli_progress_done(&prog);
        double t0 = bl_time_s();
        if (eval_run_tasks("compare", m, sets, n_sets, &c->eo, NULL, res) == 0) {
            double average;
            time_t now = time(NULL);
            char stamp[32];
            strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
            line = cJSON_CreateObject();
            cJSON_AddStringToObject(line, "model", c->model_path);
            cJSON_AddStringToObject(line, "label", r->label);
            char mname[64] = "fp";
            if (!r->fp) bl_method_name(&r->method, mname, sizeof mname);
            cJSON_AddStringToObject(line, "method", mname);
            cJSON_AddItemToObject(line, "params", params);
            params = NULL;
            cJSON_AddNumberToObject(line, "bpw_layers", bpw_layers);
            cJSON_AddNumberToObject(line, "bpw_model", bpw_model);
            cJSON_AddNumberToObject(line, "seed", (double)c->seed);
            cJSON_AddStringToObject(line, "text", c->text);
            cJSON_AddNumberToObject(line, "ctx", pr.ctx);
            cJSON_AddStringToObject(line, "ctx_source", bl_ctx_source_name(c->ppl_ctx.source));
            cJSON_AddNumberToObject(line, "tokens", (double)pr.tokens);
            cJSON_AddNumberToObject(line, "ppl", pr.ppl);
            cJSON_AddItemToObject(line, "tasks", eval_tasks_json(sets, res, n_sets, &average));
            cJSON_AddNumberToObject(line, "average", average);
            cJSON *ev = cJSON_AddObjectToObject(line, "eval");
            cJSON_AddNumberToObject(ev, "ctx", res[0].ctx);
            cJSON_AddStringToObject(ev, "ctx_source", bl_ctx_source_name(c->eval_ctx.source));
            cJSON_AddNumberToObject(ev, "limit", c->limit);
            cJSON_AddBoolToObject(ev, "bos", res[0].bos);
            cJSON_AddStringToObject(ev, "norm", c->eo.norm_bytes ? "bytes" : "chars");
            cJSON *secs = cJSON_AddObjectToObject(line, "seconds");
            cJSON_AddNumberToObject(secs, "quantize", tq);
            cJSON_AddNumberToObject(secs, "ppl", pr.seconds);
            cJSON_AddNumberToObject(secs, "eval", bl_time_s() - t0);
            cJSON_AddStringToObject(line, "version", BITLLM_VERSION);
            cJSON_AddItemToObject(line, "host", host_info());
            cJSON_AddStringToObject(line, "command", c->cmdline);
            cJSON_AddStringToObject(line, "time", stamp);
        }
    }
    cJSON_Delete(params);
    bl_model_free(q);
    if (od && line && keep) {
        if (bl_outdir_commit(od, &err) != BL_OK) {
            cli_error("compare", &err);
            cJSON_Delete(line);
            line = NULL;
        }
    } else {
        bl_outdir_abort(od);
    }
    return line;
}

static int append_line(const char *path, cJSON *line) {
    cli_json_make_valid(line); /* paths and the command line need not be UTF-8 */
    char *s = cJSON_PrintUnformatted(line);
    FILE *f = s ? fopen(path, "a") : NULL;
    int rc = 0;
    if (!f || fprintf(f, "%s\n", s) < 0 || fflush(f) != 0 || fsync(fileno(f)) != 0)
        rc = cli_errorf("compare", "cannot append to %s: %s", path, strerror(errno));
    if (f && fclose(f) != 0 && !rc) rc = cli_errorf("compare", "cannot write %s", path);
    free(s);
    return rc;
}

int cmd_compare(int argc, char **argv) {
    char default_methods[128], methods_help[192], bpw_help[128];
    bl_compare_default_methods(default_methods, sizeof default_methods);
    snprintf(methods_help, sizeof methods_help, "methods (default %s)", default_methods);
    snprintf(bpw_help, sizeof bpw_help, "bpw targets, numbers or '%s' = %s's cost per layer "
             "(default %s)", bl_bpw_keyword(), bl_bpw_keyword(), bl_bpw_keyword());
    const char *methods = default_methods, *bpws = bl_bpw_keyword(), *text = NULL,
               *tasks = "all", *out = "bitllm-compare", *data = NULL, *tokp = NULL,
               *norm = "chars";
    int limit = 0, ppl_ctx = 0, eval_ctx = 0, ppl_tokens = 0, group = 128,
        rank_l = 1, paths = 1, iters = 0;
    uint64_t seed = 0, given = 0;
    bool keep = false, no_fp = false, json = false, allow_long = false;
    cli_calib_flags cf;
    cli_calib_defaults(&cf);
    const cli_opt opts[] = {
        {"methods", 'm', OPT_STR, &methods, "LIST", methods_help, CLI_ANY},
        {"bpw", 0, OPT_STR, &bpws, "LIST", bpw_help, USES(BL_QP_BPW)},
        {"text", 'f', OPT_STR, &text, "FILE",
         "perplexity text (default $BITLLM_DATA/data/wikitext-2/wiki.test.raw)", CLI_ANY},
        {"ppl-ctx", 0, OPT_INT, &ppl_ctx, "C", "perplexity window (default: trained ctx, <= 2048)",
         CLI_MIN(2)},
        {"ppl-tokens", 0, OPT_INT, &ppl_tokens, "N", "score only the first N tokens (default all)",
         CLI_MIN(1)},
        {"tasks", 't', OPT_STR, &tasks, "LIST", "zero-shot tasks (default all)", CLI_ANY},
        {"limit", 'l', OPT_INT, &limit, "N", "first N items of each task (default all)",
         CLI_MIN(1)},
        {"eval-ctx", 0, OPT_INT, &eval_ctx, "C",
         "zero-shot window (default: trained ctx, <= 2048)", CLI_MIN(2)},
        {"allow-long-ctx", 0, OPT_FLAG, &allow_long, NULL,
         "accept a --ppl-ctx or --eval-ctx beyond the model's trained context", CLI_ANY},
        {"norm", 0, OPT_STR, &norm, "chars|bytes",
         "acc_norm by Unicode characters (default, as lm-eval) or UTF-8 bytes", CLI_ANY},
        {"data", 'd', OPT_STR, &data, "DIR", "task data folder (default $BITLLM_DATA/data)",
         CLI_ANY},
        {"out", 'o', OPT_STR, &out, "DIR", "results folder (default bitllm-compare)", CLI_ANY},
        CLI_CALIB_OPTS(cf),
        {"group", 0, OPT_INT, &group, "G", "group size, 64..128 (default: the method's)",
         CLI_RANGE(64, 128), USES(BL_QP_GROUP)},
        {"envelope-rank", 0, OPT_INT, &rank_l, "L", "envelope rank l (default 1)",
         CLI_RANGE(1, 1024), USES(BL_QP_ENVELOPE_RANK)},
        {"paths", 0, OPT_INT, &paths, "P", "paths P (default 1)", CLI_RANGE(1, 64),
         USES(BL_QP_PATHS)},
        {"iters", 0, OPT_INT, &iters, "N", "ADMM iterations (default: method's)", CLI_MIN(1),
         USES(BL_QP_ITERS)},
        {"seed", 0, OPT_U64, &seed, "S", "random seed of the fits, --calib-generate and block "
         "reconstruction (default 0)", CLI_ANY},
        {"keep", 0, OPT_FLAG, &keep, NULL, "keep the quantized models in DIR/models/", CLI_ANY},
        {"no-fp", 0, OPT_FLAG, &no_fp, NULL, "skip the FP baseline run", CLI_ANY},
        {"tokenizer", 0, OPT_STR, &tokp, "FILE", "tokenizer for llama2.c checkpoints", CLI_ANY},
        {"json", 0, OPT_FLAG, &json, NULL, "print the runs as one JSON object on stdout", CLI_ANY},
    };
    const cli_spec spec = {
        "compare", "MODEL",
        "Quantize MODEL with each method (those sized by bpw once per --bpw target), measure "
        "perplexity and zero-shot accuracy of each result and of the FP model, append one JSON line per "
        "run to DIR/results.jsonl, and render DIR/report.md with the ppl-vs-bpw plot.",
        opts, (int)(sizeof opts / sizeof opts[0]), 1, 1, &given};
    const char *pos[1];
    int np, r = cli_parse(&spec, argc, argv, pos, &np);
    if (r != CLI_OK) return cli_exit_code(r);
    if (group != 64 && group != 128) {
        cli_errorf("compare", "--group must be 64 or 128, got %d", group);
        return 2;
    }
    if (strcmp(norm, "chars") != 0 && strcmp(norm, "bytes") != 0) {
        cli_errorf("compare", "--norm must be chars or bytes, got '%s'", norm);
        return 2;
    }
    if (allow_long && !ppl_ctx && !eval_ctx) {
        cli_errorf("compare", "--allow-long-ctx has no effect without --ppl-ctx or --eval-ctx");
        return 2;
    }
    run_spec runs[64];
    int n_runs = plan_runs(methods, bpws, !no_fp, &spec, runs, 64);
    if (n_runs < 0) return 2;
    for (int i = 0; i < spec.n_opts; i++) { /* each method option must reach some run */
        const cli_opt *op = &opts[i];
        if (!op->tag || !cli_given(&spec, op->name)) continue;
        bool used = false;
        for (int k = 0; k < n_runs && !used; k++)
            used = !runs[k].fp && bl_method_uses(&runs[k].method, false, (bl_qparam)(op->tag - 1));
        if (!used) {
            char users[96];
            bl_qparam_users((bl_qparam)(op->tag - 1), false, users, sizeof users);
            cli_errorf("compare", "--%s is not used by any of --methods %s (used by: %s)",
                       op->name, methods, users);
            return 2;
        }
    }
    bool seeded = cf.calib || cf.calib_generate > 0; /* generation, reconstruction */
    for (int k = 0; k < n_runs && !seeded; k++)
        seeded = !runs[k].fp && bl_method_uses(&runs[k].method, false, BL_QP_SEED);
    if (cli_given(&spec, "seed") && !seeded) {
        cli_errorf("compare", "--seed is not used by any of --methods %s without calibration "
                   "data", methods);
        return 2;
    }
    char textbuf[4096];
    if (!text) {
        const char *root = getenv("BITLLM_DATA");
        snprintf(textbuf, sizeof textbuf, "%s/data/wikitext-2/wiki.test.raw",
                 root && *root ? root : "../shared");
        text = textbuf;
    }
    if (!data) data = eval_default_data_dir();
    /* every output is checked before anything is quantized */
    char path[4096], results[4096];
    const char *inputs[] = {pos[0], tokp, cf.calib, text, data};
    bl_err err = {0};
    snprintf(path, sizeof path, "%s/models", out);
    if (make_dir(out) || make_dir(path)) return 1;
    snprintf(results, sizeof results, "%s/results.jsonl", out);
    if (bl_output_file_check(results, inputs, 5, &err)) return cli_error("compare", &err);
    for (int i = 0; i < n_runs; i++) {
        if (runs[i].fp) continue;
        bl_outdir *od;
        snprintf(path, sizeof path, "%s/models/%s", out, runs[i].label);
        if (!(od = cli_outdir_prepare("compare", path, inputs, 5, false, false))) return 1;
        bl_outdir_abort(od); /* checked now; written for real by its run */
    }
    bl_task_set *sets[BL_TASK_COUNT];
    int n_sets = eval_load_tasks("compare", tasks, data, limit, sets);
    if (n_sets < 0) return 1;
    bl_model *fp = cli_load_model(pos[0], tokp);
    int rc = 1;
    int32_t *ids = NULL;
    size_t n_ids = 0, len;
    bl_calib_data cd = {0};
    cJSON *all = cJSON_CreateArray();
    char cmdline[2048] = "bitllm";
    for (int i = 0; i < argc; i++) {
        size_t k = strlen(cmdline);
        snprintf(cmdline + k, sizeof cmdline - k, " %s", argv[i]);
    }
    bl_ctx_choice pcc, ecc;
    if (!fp) goto done;
    if (bl_ctx_choose(fp, ppl_ctx, allow_long, &pcc, &err) ||
        bl_ctx_choose(fp, eval_ctx, allow_long, &ecc, &err)) {
        bl_fail_context(&err, err.code, "--%s", pcc.ctx > pcc.trained ? "ppl-ctx" : "eval-ctx");
        cli_error("compare", &err);
        rc = 2; /* a flag the model cannot take */
        goto done;
    }
    if (pcc.ctx > pcc.trained || ecc.ctx > ecc.trained)
        fprintf(stderr, "bitllm compare: warning: a window is beyond the %d tokens %s was trained "
                        "on (--allow-long-ctx)\n", pcc.trained, fp->path);
    char *t = cli_read_text("compare", text, &len);
    if (t) ids = cli_tokenize("compare", fp, t, len, false, &n_ids);
    free(t);
    if (!ids) goto done;
    if (ppl_tokens > 0 && (size_t)ppl_tokens < n_ids) n_ids = (size_t)ppl_tokens;
    bl_method qm[64];
    int n_qm = 0;
    for (int i = 0; i < n_runs; i++)
        if (!runs[i].fp) qm[n_qm++] = runs[i].method;
    bl_quant_opts co; /* the calibration part of every run's options */
    bl_quant_opts_default(&co);
    co.fit.seed = seed;
    co.n_threads = 0;
    {
        const int r2 = cli_calib_apply("compare", &spec, &cf, fp, qm, n_qm, &cd, &co);
        if (r2) {
            rc = r2;
            goto done;
        }
    }
    compare_cfg c = {
        .model_path = pos[0], .text = text, .calib_path = cf.calib, .cmdline = cmdline,
        .tokp = tokp,
        .data = data, .ppl_ctx = pcc, .eval_ctx = ecc,
        .iters = iters, .limit = limit, .seed = seed, .n_ids = n_ids, .ids = ids,
        .calib = &co,
        .eo = {.ctx = ecc.ctx, .norm_bytes = strcmp(norm, "bytes") == 0}};
    for (int i = 0; i < n_runs; i++) {
        fprintf(stderr, "[%d/%d] %s\n", i + 1, n_runs, runs[i].label);
        snprintf(path, sizeof path, "%s/models/%s", out, runs[i].label);
        cJSON *line = run_one(&c, fp, &runs[i], path, keep, sets, n_sets);
        if (!line || append_line(results, line)) {
            cJSON_Delete(line);
            goto done;
        }
        fprintf(stderr, "%s: ppl %.4f, average acc %.4f, bpw %.4f layers / %.4f model\n",
                runs[i].label, cJSON_GetObjectItem(line, "ppl")->valuedouble,
                cJSON_GetObjectItem(line, "average")->valuedouble,
                cJSON_GetObjectItem(line, "bpw_layers")->valuedouble,
                cJSON_GetObjectItem(line, "bpw_model")->valuedouble);
        cJSON_AddItemToArray(all, line);
    }
    rc = report_render("compare", out, !json);
    if (json && rc == 0) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "results", results);
        cJSON_AddItemToObject(o, "runs", all);
        all = NULL;
        cli_print_json(o);
    }
done:
    cJSON_Delete(all);
    free(ids);
    bl_calib_data_free(&cd);
    eval_free_tasks(sets, n_sets);
    bl_model_free(fp);
    return rc;
}
