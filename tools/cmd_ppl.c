/* bitllm ppl: perplexity of a model on a text file. */
#include <stdio.h>
#include <stdlib.h>

#include "bitllm/eval.h"
#include "cli.h"
#include "cli_util.h"

int cmd_ppl(int argc, char **argv) {
    const char *file = NULL, *tokp = NULL;
    const char *tables_s = NULL, *kv_s = NULL;
    int ctx = 0, batch = 128;
    bool json = false, allow_long = false;
    const cli_opt opts[] = {
        {"file", 'f', OPT_STR, &file, "FILE", "text file (e.g. wikitext-2 wiki.test.raw)", CLI_ANY},
        {"ctx", 'c', OPT_INT, &ctx, "C",
         "window length incl. BOS (default: trained ctx, <= 2048; above the trained ctx only with "
         "--allow-long-ctx)", CLI_MIN(2)},
        {"allow-long-ctx", 0, OPT_FLAG, &allow_long, NULL,
         "accept a --ctx beyond the model's trained context (with a warning)", .needs = "ctx"},
        {"batch", 'b', OPT_INT, &batch, "B", "tokens per forward call (default 128)", CLI_MIN(1)},
        CLI_INFERENCE_OPTS(tables_s, kv_s),
        {"tokenizer", 0, OPT_STR, &tokp, "FILE", "tokenizer for llama2.c checkpoints", CLI_ANY},
        {"json", 0, OPT_FLAG, &json, NULL, "print one JSON object on stdout", CLI_ANY},
    };
    const cli_spec spec = {
        "ppl", "MODEL",
        "Perplexity: the file is tokenized once without BOS and cut into chunks of C-1 tokens; "
        "each runs as [BOS]+chunk and every chunk token is scored; ppl = exp(nll/tokens). The "
        "output says which window was used and where it came from.",
        opts, (int)(sizeof opts / sizeof opts[0]), 1, 1, NULL};
    const char *pos[1];
    int np, r = cli_parse(&spec, argc, argv, pos, &np);
    if (r != CLI_OK) return cli_exit_code(r);
    if (!file) return cli_errorf("ppl", "missing -f FILE");
    bl_load_opts lo = {.tokenizer_path = tokp};
    bl_model *m = cli_load_model_tables("ppl", pos[0], &lo, tables_s, kv_s, &r);
    if (!m) return r;
    bl_err err = {0};
    bl_ctx_choice cc;
    if (bl_ctx_choose(m, ctx, allow_long, &cc, &err) != BL_OK) {
        bl_model_free(m);
        cli_error("ppl", &err);
        return 2; /* a flag the model cannot take */
    }
    char ctx_text[160];
    bl_ctx_describe(&cc, "--ctx", ctx_text, sizeof ctx_text);
    if (cc.ctx > cc.trained)
        fprintf(stderr, "bitllm ppl: warning: --ctx %d is beyond the %d tokens %s was trained on "
                        "(--allow-long-ctx); expect a worse perplexity\n",
                cc.ctx, cc.trained, m->path);
    int rc = 1;
    size_t len, n = 0;
    int32_t *ids = NULL;
    char *text = cli_read_text("ppl", file, &len);
    if (text) ids = cli_tokenize("ppl", m, text, len, false, &n);
    free(text);
    if (ids) {
        bl_ppl_result res;
        cli_progress pr;
        char label[64];
        snprintf(label, sizeof label, "ppl (%zu tokens, ctx %d)", n, cc.ctx);
        cli_progress_start(&pr, label);
        if (bl_perplexity(m, ids, n, cc.ctx, batch, cli_progress_cb, &pr, &res, &err) != BL_OK) {
            fprintf(stderr, "\n");
            bl_fail_context(&err, err.code, "%s", file);
            cli_error("ppl", &err);
        } else {
            cli_progress_done(&pr);
            double bpw_layers, bpw_model;
            bl_model_bpw(m, &bpw_layers, &bpw_model);
            if (json) {
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "model", m->path);
                cJSON_AddStringToObject(o, "file", file);
                cJSON_AddNumberToObject(o, "ppl", res.ppl);
                cJSON_AddNumberToObject(o, "nll", res.nll);
                cJSON_AddNumberToObject(o, "tokens", (double)res.tokens);
                cJSON_AddNumberToObject(o, "ctx", res.ctx);
                cJSON_AddStringToObject(o, "ctx_source", bl_ctx_source_name(cc.source));
                cJSON_AddNumberToObject(o, "trained_ctx", cc.trained);
                cJSON_AddNumberToObject(o, "chunks", (double)res.chunks);
                cJSON_AddNumberToObject(o, "bpw_layers", bpw_layers);
                cJSON_AddNumberToObject(o, "bpw_model", bpw_model);
                cJSON_AddStringToObject(o, "method", m->quant_method[0] ? m->quant_method : "fp");
                cJSON_AddStringToObject(o, "sign_tables", bl_sign_tables_name(m->sign_tables));
                cJSON_AddStringToObject(o, "kv_cache", bl_kv_cache_name(m->kv_cache));
                cJSON_AddNumberToObject(o, "seconds", res.seconds);
                cli_print_json(o);
            } else {
                printf("ppl %.4f  (nll/token %.5f, %lld tokens, %s, %lld chunks; "
                       "bpw %.3f layers / %.3f model; %s sign tables, %s KV cache; %.1fs)\n",
                       res.ppl, res.nll / (double)res.tokens, (long long)res.tokens, ctx_text,
                       (long long)res.chunks, bpw_layers, bpw_model,
                       bl_sign_tables_name(m->sign_tables), bl_kv_cache_name(m->kv_cache), res.seconds);
            }
            rc = 0;
        }
    }
    free(ids);
    bl_model_free(m);
    return rc;
}
