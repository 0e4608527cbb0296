/* bitllm eval: zero-shot tasks with lm-evaluation-harness semantics (docs/eval.md). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_util.h"
#include "cmd_eval.h"

const char *eval_default_data_dir(void) {
    static char buf[4096];
    const char *root = getenv("BITLLM_DATA");
    if (!root || !*root) root = "../shared";
    snprintf(buf, sizeof buf, "%s/data", root);
    return buf;
}

int eval_load_tasks(const char *cmd, const char *list, const char *data_dir, int limit,
                    bl_task_set **sets) {
    bl_err err = {0};
    bl_task_id ids[BL_TASK_COUNT];
    int n;
    if (bl_task_parse_list(list, ids, &n, &err) != BL_OK) {
        cli_error(cmd, &err);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        if (bl_task_load(ids[i], data_dir, limit, &sets[i], &err) != BL_OK) {
            if (err.code == BL_ERR_IO) /* a missing file: say where the data is looked for */
                cli_errorf(cmd, "%s (task data from --data DIR, default $BITLLM_DATA/data, "
                           "here %s)", err.msg, data_dir);
            else
                cli_error(cmd, &err);
            eval_free_tasks(sets, i);
            return -1;
        }
    }
    return n;
}

void eval_free_tasks(bl_task_set **sets, int n) {
    for (int i = 0; i < n; i++) bl_task_set_free(sets[i]);
}

typedef struct {
    cli_outfile *dump;
    const bl_task_set *set;
    bool norm_bytes;
} dump_ctx;

static void dump_item(void *vctx, int index, const bl_task_item *it, const bl_cont_score *s) {
    dump_ctx *d = vctx;
    int pred, pred_norm;
    bl_task_predict(it, s, d->norm_bytes, &pred, &pred_norm);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "task", bl_task_name(d->set->id));
    cJSON_AddNumberToObject(o, "index", index);
    cJSON_AddNumberToObject(o, "gold", it->gold);
    cJSON_AddNumberToObject(o, "pred", pred);
    if (bl_task_has_acc_norm(d->set->id)) cJSON_AddNumberToObject(o, "pred_norm", pred_norm);
    cJSON *ll = cJSON_AddArrayToObject(o, "ll"), *gr = cJSON_AddArrayToObject(o, "greedy"),
          *nt = cJSON_AddArrayToObject(o, "tokens");
    for (int j = 0; j < it->n_req; j++) {
        cJSON_AddItemToArray(ll, cJSON_CreateNumber(s[j].ll));
        cJSON_AddItemToArray(gr, cJSON_CreateBool(s[j].greedy));
        cJSON_AddItemToArray(nt, cJSON_CreateNumber(s[j].n_tokens));
    }
    cli_json_make_valid(o);
    char *line = cJSON_PrintUnformatted(o);
    if (!line || fprintf(d->dump->f, "%s\n", line) < 0) d->dump->failed = true;
    free(line);
    cJSON_Delete(o);
}

int eval_run_tasks(const char *cmd, const bl_model *m, bl_task_set *const *sets, int n,
                   const bl_eval_opts *o, cli_outfile *dump, bl_task_result *res) {
    for (int i = 0; i < n; i++) {
        bl_eval_opts eo = *o;
        cli_progress pr;
        char label[96];
        snprintf(label, sizeof label, "%-13s (%d items)", bl_task_name(sets[i]->id),
                 sets[i]->n_items);
        cli_progress_start(&pr, label);
        eo.progress = cli_progress_cb;
        eo.progress_ctx = &pr;
        dump_ctx dc = {dump, sets[i], o->norm_bytes};
        if (dump) eo.on_item = dump_item, eo.on_item_ctx = &dc;
        bl_err err = {0};
        if (bl_task_eval(m, sets[i], &eo, &res[i], &err) != BL_OK) {
            fprintf(stderr, "\n");
            return cli_error(cmd, &err);
        }
        cli_progress_done(&pr);
    }
    return 0;
}

cJSON *eval_tasks_json(bl_task_set *const *sets, const bl_task_result *res, int n,
                       double *average) {
    cJSON *t = cJSON_CreateObject();
    double sum = 0;
    for (int i = 0; i < n; i++) {
        const bl_task_result *r = &res[i];
        cJSON *o = cJSON_AddObjectToObject(t, bl_task_name(r->id));
        cJSON_AddNumberToObject(o, "acc", r->acc);
        cJSON_AddNumberToObject(o, "acc_stderr", r->acc_stderr);
        if (bl_task_has_acc_norm(r->id)) {
            cJSON_AddNumberToObject(o, "acc_norm", r->acc_norm);
            cJSON_AddNumberToObject(o, "acc_norm_stderr", r->acc_norm_stderr);
        }
        if (r->id == BL_TASK_LAMBADA) cJSON_AddNumberToObject(o, "ppl", r->ppl);
        cJSON_AddNumberToObject(o, "n", r->n);
        cJSON_AddNumberToObject(o, "tokens", (double)r->tokens);
        cJSON_AddNumberToObject(o, "scored_tokens", (double)r->scored);
        cJSON_AddNumberToObject(o, "computed_tokens", (double)r->computed);
        cJSON_AddNumberToObject(o, "truncated", (double)r->truncated);
        cJSON_AddNumberToObject(o, "seconds", r->seconds);
        cJSON_AddStringToObject(o, "file", sets[i]->path);
        sum += r->acc;
    }
    *average = n ? sum / n : NAN;
    return t;
}

void eval_print_table(FILE *f, const bl_task_result *res, int n) {
    fprintf(f, "%-14s %7s %7s %9s %7s %6s %9s %8s\n", "task", "acc", "±", "acc_norm", "±", "n",
            "tokens", "seconds");
    double sum = 0;
    for (int i = 0; i < n; i++) {
        const bl_task_result *r = &res[i];
        fprintf(f, "%-14s %7.4f %7.4f", bl_task_name(r->id), r->acc, r->acc_stderr);
        if (bl_task_has_acc_norm(r->id))
            fprintf(f, " %9.4f %7.4f", r->acc_norm, r->acc_norm_stderr);
        else
            fprintf(f, " %9s %7s", "-", "-");
        fprintf(f, " %6d %9lld %8.1f", r->n, (long long)r->tokens, r->seconds);
        if (r->id == BL_TASK_LAMBADA) fprintf(f, "  ppl %.3f", r->ppl);
        fputc('\n', f);
        sum += r->acc;
    }
    fprintf(f, "%-14s %7.4f  (mean acc over %d task%s)\n", "average", n ? sum / n : NAN, n,
            n == 1 ? "" : "s");
}

int cmd_eval(int argc, char **argv) {
    const char *tasks = NULL, *data = NULL, *tokp = NULL, *norm = "chars", *dump_path = NULL;
    const char *tables_s = NULL, *kv_s = NULL;
    int limit = 0, ctx = 0;
    bool json = false, no_bos = false, allow_long = false;
    const cli_opt opts[] = {
        {"tasks", 't', OPT_STR, &tasks, "LIST",
         "comma-separated: piqa, arc_easy, arc_challenge, hellaswag, winogrande, boolq, "
         "lambada, openbookqa, or all", CLI_ANY},
        {"limit", 'l', OPT_INT, &limit, "N", "first N items of each task (default: all)",
         CLI_MIN(1)},
        {"data", 'd', OPT_STR, &data, "DIR",
         "folder with llm-foundry-icl/, piqa/, hellaswag/ (default $BITLLM_DATA/data or "
         "../shared/data)", CLI_ANY},
        {"ctx", 'c', OPT_INT, &ctx, "C",
         "window in tokens (default: trained ctx, <= 2048; above the trained ctx only with "
         "--allow-long-ctx)", CLI_MIN(2)},
        {"allow-long-ctx", 0, OPT_FLAG, &allow_long, NULL,
         "accept a --ctx beyond the model's trained context (with a warning)", .needs = "ctx"},
        {"norm", 0, OPT_STR, &norm, "chars|bytes",
         "acc_norm divides by the choice's length in Unicode characters (default, as lm-eval's "
         "code: len() of the Python string) or in UTF-8 bytes", CLI_ANY},
        {"no-bos", 0, OPT_FLAG, &no_bos, NULL, "do not prepend BOS", CLI_ANY},
        {"dump", 0, OPT_STR, &dump_path, "FILE", "write per-item scores as JSON lines", CLI_ANY},
        CLI_INFERENCE_OPTS(tables_s, kv_s),
        {"tokenizer", 0, OPT_STR, &tokp, "FILE", "tokenizer for llama2.c checkpoints", CLI_ANY},
        {"json", 0, OPT_FLAG, &json, NULL, "print one JSON object on stdout", CLI_ANY},
    };
    const cli_spec spec = {
        "eval", "MODEL",
        "Zero-shot accuracy with lm-evaluation-harness semantics: the log-likelihood of each "
        "choice's continuation given the context; acc = argmax of the sum, acc_norm = argmax of "
        "the sum over the choice's length in characters (--norm bytes: UTF-8 bytes). The output "
        "says which window was used and where it came from. Templates and differences: "
        "docs/eval.md.",
        opts, (int)(sizeof opts / sizeof opts[0]), 1, 1, NULL};
    const char *pos[1];
    int np, r = cli_parse(&spec, argc, argv, pos, &np);
    if (r != CLI_OK) return cli_exit_code(r);
    if (!tasks) return cli_errorf("eval", "missing --tasks LIST (e.g. --tasks all)");
    if (strcmp(norm, "chars") != 0 && strcmp(norm, "bytes") != 0) {
        cli_errorf("eval", "--norm must be chars or bytes, got '%s'", norm);
        return 2;
    }
    if (!data) data = eval_default_data_dir();
    bl_err err = {0};
    const char *inputs[] = {pos[0], tokp, data};
    if (dump_path && bl_output_file_check(dump_path, inputs, 3, &err)) return cli_error("eval", &err);
    bl_task_set *sets[BL_TASK_COUNT];
    int n = eval_load_tasks("eval", tasks, data, limit, sets);
    if (n < 0) return 1;
    bl_load_opts lo = {.tokenizer_path = tokp};
    bl_model *m = cli_load_model_tables("eval", pos[0], &lo, tables_s, kv_s, &r);
    if (!m) {
        eval_free_tasks(sets, n);
        return r;
    }
    int rc = 1;
    cli_outfile dump = {0};
    bl_ctx_choice cc;
    if (!m->tok) {
        cli_errorf("eval", "%s has no tokenizer; pass --tokenizer FILE", m->path);
        goto done;
    }
    if (bl_ctx_choose(m, ctx, allow_long, &cc, &err)) {
        cli_error("eval", &err);
        rc = 2; /* a flag the model cannot take */
        goto done;
    }
    if (cc.ctx > cc.trained)
        fprintf(stderr, "bitllm eval: warning: --ctx %d is beyond the %d tokens %s was trained "
                        "on (--allow-long-ctx)\n", cc.ctx, cc.trained, m->path);
    if (dump_path && cli_outfile_open("eval", dump_path, &dump)) goto done;
    bl_eval_opts eo = {.ctx = cc.ctx, .norm_bytes = strcmp(norm, "bytes") == 0, .no_bos = no_bos};
    bl_task_result res[BL_TASK_COUNT];
    double t0 = bl_time_s();
    if (eval_run_tasks("eval", m, sets, n, &eo, dump_path ? &dump : NULL, res)) goto done;
    if (dump_path && cli_outfile_commit("eval", &dump)) goto done;
    double secs = bl_time_s() - t0, bpw_layers, bpw_model, average;
    bl_model_bpw(m, &bpw_layers, &bpw_model);
    int64_t tokens = 0, computed = 0;
    for (int i = 0; i < n; i++) tokens += res[i].tokens, computed += res[i].computed;
    char ctx_text[160];
    bl_ctx_describe(&cc, "--ctx", ctx_text, sizeof ctx_text);
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", m->path);
        cJSON_AddStringToObject(o, "method", m->quant_method[0] ? m->quant_method : "fp");
        cJSON_AddItemToObject(o, "tasks", eval_tasks_json(sets, res, n, &average));
        cJSON_AddNumberToObject(o, "average", average);
        cJSON_AddNumberToObject(o, "bpw_layers", bpw_layers);
        cJSON_AddNumberToObject(o, "bpw_model", bpw_model);
        cJSON_AddStringToObject(o, "sign_tables", bl_sign_tables_name(m->sign_tables));
        cJSON_AddStringToObject(o, "kv_cache", bl_kv_cache_name(m->kv_cache));
        cJSON_AddNumberToObject(o, "ctx", cc.ctx);
        cJSON_AddStringToObject(o, "ctx_source", bl_ctx_source_name(cc.source));
        cJSON_AddNumberToObject(o, "trained_ctx", cc.trained);
        cJSON_AddBoolToObject(o, "bos", res[0].bos);
        cJSON_AddStringToObject(o, "norm", norm);
        if (limit > 0) cJSON_AddNumberToObject(o, "limit", limit);
        else cJSON_AddNullToObject(o, "limit");
        cJSON_AddNumberToObject(o, "tokens", (double)tokens);
        cJSON_AddNumberToObject(o, "computed_tokens", (double)computed);
        cJSON_AddNumberToObject(o, "seconds", secs);
        cJSON_AddStringToObject(o, "version", BITLLM_VERSION);
        cli_print_json(o);
    } else {
        eval_print_table(stdout, res, n);
        printf("model %s (%s); bpw %.3f layers / %.3f model; %s sign tables, %s KV cache; %s; BOS %s; "
               "acc_norm by %s; %lld tokens (%lld computed); %.1fs\n",
               m->path, m->quant_method[0] ? m->quant_method : "fp", bpw_layers, bpw_model,
               bl_sign_tables_name(m->sign_tables), bl_kv_cache_name(m->kv_cache), ctx_text,
               res[0].bos ? "yes" : "no", norm,
               (long long)tokens,
               (long long)computed, secs);
    }
    rc = 0;
done:
    cli_outfile_abort(&dump);
    eval_free_tasks(sets, n);
    bl_model_free(m);
    return rc;
}
