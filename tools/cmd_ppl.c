/* bitllm ppl: perplexity of a model on a text file. */
#include <stdio.h>
#include <stdlib.h>

#include "bitllm/eval.h"
#include "cli.h"
#include "cli_util.h"

int cmd_ppl(int argc, char **argv) {
    const char *file = NULL, *tokp = NULL;
    int ctx = 0, batch = 128;
    bool json = false;
    const cli_opt opts[] = {
        {"file", 'f', OPT_STR, &file, "FILE", "text file (e.g. wikitext-2 wiki.test.raw)"},
        {"ctx", 'c', OPT_INT, &ctx, "C", "window length incl. BOS (default: trained ctx, <= 2048)"},
        {"batch", 'b', OPT_INT, &batch, "B", "tokens per forward call (default 128)"},
        {"tokenizer", 0, OPT_STR, &tokp, "FILE", "tokenizer for llama2.c checkpoints"},
        {"json", 0, OPT_FLAG, &json, NULL, "print one JSON object on stdout"},
    };
    const cli_spec spec = {
        "ppl", "MODEL",
        "Perplexity: the file is tokenized once without BOS and cut into chunks of C-1 tokens; "
        "each runs as [BOS]+chunk and every chunk token is scored; ppl = exp(nll/tokens).",
        opts, 5, 1, 1};
    const char *pos[1];
    int np, r = cli_parse(&spec, argc, argv, pos, &np);
    if (r != CLI_OK) return cli_exit_code(r);
    if (!file) return cli_errorf("ppl", "missing -f FILE");
    bl_model *m = cli_load_model(pos[0], tokp);
    if (!m) return 1;
    if (ctx == 0) ctx = m->cfg.max_seq < 2048 ? m->cfg.max_seq : 2048;
    int rc = 1;
    size_t len, n = 0;
    int32_t *ids = NULL;
    char *text = cli_read_text("ppl", file, &len);
    if (text) ids = cli_tokenize("ppl", m, text, len, false, &n);
    free(text);
    if (ids) {
        bl_err err = {0};
        bl_ppl_result res;
        cli_progress pr;
        char label[64];
        snprintf(label, sizeof label, "ppl (%zu tokens, ctx %d)", n, ctx);
        cli_progress_start(&pr, label);
        if (bl_perplexity(m, ids, n, ctx, batch, cli_progress_cb, &pr, &res, &err) != BL_OK) {
            fprintf(stderr, "\n");
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
                cJSON_AddNumberToObject(o, "chunks", (double)res.chunks);
                cJSON_AddNumberToObject(o, "bpw_layers", bpw_layers);
                cJSON_AddNumberToObject(o, "bpw_model", bpw_model);
                cJSON_AddStringToObject(o, "method", m->quant_method[0] ? m->quant_method : "fp");
                cJSON_AddNumberToObject(o, "seconds", res.seconds);
                cli_print_json(o);
            } else {
                printf("ppl %.4f  (nll/token %.5f, %lld tokens, ctx %d, %lld chunks; "
                       "bpw %.3f layers / %.3f model; %.1fs)\n",
                       res.ppl, res.nll / (double)res.tokens, (long long)res.tokens, res.ctx,
                       (long long)res.chunks, bpw_layers, bpw_model, res.seconds);
            }
            rc = 0;
        }
    }
    free(ids);
    bl_model_free(m);
    return rc;
}
