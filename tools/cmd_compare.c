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
#include "cli_util.h"
#include "cmd_eval.h"

typedef struct {
    bl_qmethod method;
    bool fp;
    double bpw; /* dbf/mdbf target; 0 = match onebit per layer */
    char label[48];
} run_spec;

/* Splits a comma list into runs: FP first, then each method; dbf/mdbf once per bpw target, the
 * other methods once (their cost is fixed). Returns the count or -1 (error printed). */
static int plan_runs(const char *methods, const char *bpws, bool fp, run_spec *runs, int cap) {
    int n = 0;
    if (fp) {
        runs[n] = (run_spec){.fp = true};
        snprintf(runs[n++].label, sizeof runs[0].label, "fp");
    }
    char mbuf[256], bbuf[256];
    snprintf(mbuf, sizeof mbuf, "%s", methods);
    for (char *save = NULL, *m = strtok_r(mbuf, ",", &save); m; m = strtok_r(NULL, ",", &save)) {
        bl_qmethod q;
        if (!bl_qmethod_from_name(m, &q)) {
            cli_errorf("compare", "unknown method '%s' (rtn1..rtn4, onebit, dbf, mdbf)", m);
            return -1;
        }
        if (q != BL_QM_DBF && q != BL_QM_MDBF) {
            if (n == cap) return cli_errorf("compare", "too many runs"), -1;
            runs[n] = (run_spec){.method = q};
            snprintf(runs[n++].label, sizeof runs[0].label, "%s", m);
            continue;
        }
        snprintf(bbuf, sizeof bbuf, "%s", bpws);
        for (char *s2 = NULL, *b = strtok_r(bbuf, ",", &s2); b; b = strtok_r(NULL, ",", &s2)) {
            double v = 0;
            if (strcmp(b, "onebit") != 0) {
                char *end;
                v = strtod(b, &end);
                if (*end || !(v > 0 && v <= 16)) {
                    cli_errorf("compare", "bad bpw '%s' (a number in (0, 16] or onebit)", b);
                    return -1;
                }
            }
            if (n == cap) return cli_errorf("compare", "too many runs"), -1;
            runs[n] = (run_spec){.method = q, .bpw = v};
            snprintf(runs[n++].label, sizeof runs[0].label, "%s-%s", m, b);
        }
    }
    if (n == 0) cli_errorf("compare", "nothing to run");
    return n ? n : -1;
}

/* Removes a flat directory written by bl_model_save. */
static void remove_model_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[4096];
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
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
    const char *model_path, *text, *calib, *cmdline, *tokp;
    int ppl_ctx, calib_tokens, group, rank_l, paths, iters, limit;
    uint64_t seed;
    size_t n_ids;
    const int32_t *ids, *calib_ids;
    size_t n_calib;
    bl_eval_opts eo;
} compare_cfg;

/* Quantizes (unless FP), measures, and returns the JSON line of one run (NULL on error). */
static cJSON *run_one(const compare_cfg *c, const bl_model *fp, const run_spec *r,
                      const char *outdir, bool keep, bl_task_set *const *sets, int n_sets) {
    bl_err err = {0};
    const bl_model *m = fp;
    bl_model *q = NULL;
    double tq = 0;
    cJSON *params = cJSON_CreateObject();
    if (!r->fp) {
        bl_quant_opts o;
        bl_quant_opts_default(&o);
        o.method = r->method;
        o.bpw = r->bpw;
        o.group = c->group;
        o.rank_l = c->rank_l;
        o.paths = c->paths;
        o.fit.seed = c->seed;
        o.fit.iters = c->iters;
        o.calib_ids = c->calib_ids;
        o.n_calib = c->n_calib;
        o.provenance = c->cmdline;
        if (r->method == BL_QM_DBF || r->method == BL_QM_MDBF) {
            if (r->bpw > 0) cJSON_AddNumberToObject(params, "bpw_target", r->bpw);
            else cJSON_AddStringToObject(params, "bpw_target", "onebit");
            cJSON_AddNumberToObject(params, "iters", c->iters);
        }
        if (r->method >= BL_QM_RTN2 && r->method <= BL_QM_RTN4)
            cJSON_AddNumberToObject(params, "group", c->group);
        if (r->method == BL_QM_MDBF) {
            cJSON_AddNumberToObject(params, "envelope_rank", c->rank_l);
            cJSON_AddNumberToObject(params, "paths", c->paths);
        }
        if (c->calib) {
            cJSON_AddStringToObject(params, "calib", c->calib);
            cJSON_AddNumberToObject(params, "calib_tokens", (double)c->n_calib);
        }
        fprintf(stderr, "quantizing with %s into %s\n", r->label, outdir);
        bl_quant_summary sum;
        if (bl_quantize_model(fp, &o, outdir, &sum, &err) != BL_OK ||
            bl_model_load(outdir, &(bl_load_opts){.tokenizer_path = c->tokp}, &q, &err) != BL_OK) {
            cli_error("compare", &err);
            cJSON_Delete(params);
            if (!keep) remove_model_dir(outdir);
            return NULL;
        }
        tq = sum.seconds;
        m = q;
    }
    double bpw_layers, bpw_model;
    bl_model_bpw(m, &bpw_layers, &bpw_model);
    bl_ppl_result pr;
    cli_progress prog;
    char label[96];
    snprintf(label, sizeof label, "ppl (%zu tokens, ctx %d)", c->n_ids, c->ppl_ctx);
    cli_progress_start(&prog, label);
    bl_task_result res[BL_TASK_COUNT];
    cJSON *line = NULL;
    if (bl_perplexity(m, c->ids, c->n_ids, c->ppl_ctx, 128, cli_progress_cb, &prog, &pr, &err)) {
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
            cJSON_AddStringToObject(line, "method", r->fp ? "fp" : bl_qmethod_name(r->method));
            cJSON_AddItemToObject(line, "params", params);
            params = NULL;
            cJSON_AddNumberToObject(line, "bpw_layers", bpw_layers);
            cJSON_AddNumberToObject(line, "bpw_model", bpw_model);
            cJSON_AddNumberToObject(line, "seed", (double)c->seed);
            cJSON_AddStringToObject(line, "text", c->text);
            cJSON_AddNumberToObject(line, "ctx", pr.ctx);
            cJSON_AddNumberToObject(line, "tokens", (double)pr.tokens);
            cJSON_AddNumberToObject(line, "ppl", pr.ppl);
            cJSON_AddItemToObject(line, "tasks", eval_tasks_json(sets, res, n_sets, &average));
            cJSON_AddNumberToObject(line, "average", average);
            cJSON *ev = cJSON_AddObjectToObject(line, "eval");
            cJSON_AddNumberToObject(ev, "ctx", res[0].ctx);
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
    if (!r->fp && !keep) remove_model_dir(outdir);
    return line;
}

static int append_line(const char *path, cJSON *line) {
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
    const char *methods = "rtn1,onebit,dbf,mdbf", *bpws = "onebit", *text = NULL,
               *tasks = "all", *out = "bitllm-compare", *data = NULL, *tokp = NULL,
               *calib = NULL;
    int limit = 0, ppl_ctx = 0, eval_ctx = 0, ppl_tokens = 0, calib_tokens = 16384, group = 128,
        rank_l = 1, paths = 1, iters = 0;
    uint64_t seed = 0;
    bool keep = false, no_fp = false, json = false;
    const cli_opt opts[] = {
        {"methods", 'm', OPT_STR, &methods, "LIST", "methods (default rtn1,onebit,dbf,mdbf)"},
        {"bpw", 0, OPT_STR, &bpws, "LIST",
         "dbf/mdbf targets, numbers or 'onebit' = onebit's cost per layer (default onebit)"},
        {"text", 'f', OPT_STR, &text, "FILE",
         "perplexity text (default $BITLLM_DATA/data/wikitext-2/wiki.test.raw)"},
        {"ppl-ctx", 0, OPT_INT, &ppl_ctx, "C", "perplexity window (default: trained ctx, <= 2048)"},
        {"ppl-tokens", 0, OPT_INT, &ppl_tokens, "N", "score only the first N tokens (default all)"},
        {"tasks", 't', OPT_STR, &tasks, "LIST", "zero-shot tasks (default all)"},
        {"limit", 'l', OPT_INT, &limit, "N", "first N items of each task (default all)"},
        {"eval-ctx", 0, OPT_INT, &eval_ctx, "C",
         "zero-shot window (default: trained ctx, <= 2048)"},
        {"data", 'd', OPT_STR, &data, "DIR", "task data folder (default $BITLLM_DATA/data)"},
        {"out", 'o', OPT_STR, &out, "DIR", "results folder (default bitllm-compare)"},
        {"calib", 0, OPT_STR, &calib, "FILE", "calibration text for dbf/mdbf importance"},
        {"calib-tokens", 0, OPT_INT, &calib_tokens, "N", "calibration tokens (default 16384)"},
        {"group", 0, OPT_INT, &group, "G", "rtn2..4 group size (default 128)"},
        {"envelope-rank", 0, OPT_INT, &rank_l, "L", "mdbf envelope rank (default 1)"},
        {"paths", 0, OPT_INT, &paths, "P", "mdbf paths (default 1)"},
        {"iters", 0, OPT_INT, &iters, "N", "dbf/mdbf iterations (default: method's)"},
        {"seed", 0, OPT_U64, &seed, "S", "random seed (default 0)"},
        {"keep", 0, OPT_FLAG, &keep, NULL, "keep the quantized models in DIR/models/"},
        {"no-fp", 0, OPT_FLAG, &no_fp, NULL, "skip the FP baseline run"},
        {"tokenizer", 0, OPT_STR, &tokp, "FILE", "tokenizer for llama2.c checkpoints"},
        {"json", 0, OPT_FLAG, &json, NULL, "print the runs as one JSON object on stdout"},
    };
    const cli_spec spec = {
        "compare", "MODEL",
        "Quantize MODEL with each method (dbf/mdbf once per --bpw target), measure perplexity "
        "and zero-shot accuracy of each result and of the FP model, append one JSON line per "
        "run to DIR/results.jsonl, and render DIR/report.md with the ppl-vs-bpw plot.",
        opts, (int)(sizeof opts / sizeof opts[0]), 1, 1};
    const char *pos[1];
    int np, r = cli_parse(&spec, argc, argv, pos, &np);
    if (r != CLI_OK) return cli_exit_code(r);
    if (limit < 0 || ppl_tokens < 0 || calib_tokens < 1 || rank_l < 1 || paths < 1 || iters < 0)
        return cli_errorf("compare", "counts must be positive");
    if (ppl_ctx == 1 || ppl_ctx < 0 || eval_ctx == 1 || eval_ctx < 0)
        return cli_errorf("compare", "windows must be >= 2 tokens");
    if (group != 64 && group != 128) return cli_errorf("compare", "--group must be 64 or 128");
    run_spec runs[64];
    int n_runs = plan_runs(methods, bpws, !no_fp, runs, 64);
    if (n_runs < 0) return 2;
    char textbuf[4096];
    if (!text) {
        const char *root = getenv("BITLLM_DATA");
        snprintf(textbuf, sizeof textbuf, "%s/data/wikitext-2/wiki.test.raw",
                 root && *root ? root : "../shared");
        text = textbuf;
    }
    if (!data) data = eval_default_data_dir();
    bl_task_set *sets[BL_TASK_COUNT];
    int n_sets = eval_load_tasks("compare", tasks, data, limit, sets);
    if (n_sets < 0) return 1;
    bl_model *fp = cli_load_model(pos[0], tokp);
    int rc = 1;
    int32_t *ids = NULL, *cids = NULL;
    size_t n_ids = 0, n_cids = 0, len;
    cJSON *all = cJSON_CreateArray();
    char cmdline[2048] = "bitllm";
    for (int i = 0; i < argc; i++) {
        size_t k = strlen(cmdline);
        snprintf(cmdline + k, sizeof cmdline - k, " %s", argv[i]);
    }
    if (!fp) goto done;
    char *t = cli_read_text("compare", text, &len);
    if (t) ids = cli_tokenize("compare", fp, t, len, false, &n_ids);
    free(t);
    if (!ids) goto done;
    if (ppl_tokens > 0 && (size_t)ppl_tokens < n_ids) n_ids = (size_t)ppl_tokens;
    if (calib) {
        t = cli_read_text("compare", calib, &len);
        if (t) cids = cli_tokenize("compare", fp, t, len, false, &n_cids);
        free(t);
        if (!cids) goto done;
        if (n_cids > (size_t)calib_tokens) n_cids = (size_t)calib_tokens;
    }
    char path[4096], results[4096];
    snprintf(path, sizeof path, "%s/models", out);
    if (make_dir(out) || make_dir(path)) goto done;
    snprintf(results, sizeof results, "%s/results.jsonl", out);
    compare_cfg c = {
        .model_path = pos[0], .text = text, .calib = calib, .cmdline = cmdline, .tokp = tokp,
        .ppl_ctx = ppl_ctx ? ppl_ctx : (fp->cfg.max_seq < 2048 ? fp->cfg.max_seq : 2048),
        .calib_tokens = calib_tokens, .group = group, .rank_l = rank_l, .paths = paths,
        .iters = iters, .limit = limit, .seed = seed, .n_ids = n_ids, .ids = ids,
        .calib_ids = cids, .n_calib = n_cids, .eo = {.ctx = eval_ctx, .norm_bytes = true}};
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
    free(cids);
    eval_free_tasks(sets, n_sets);
    bl_model_free(fp);
    return rc;
}
