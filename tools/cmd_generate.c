/* bitllm generate: sample a continuation, streaming it to stdout (or as JSON). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_util.h"

int cmd_generate(int argc, char **argv) {
    const char *prompt = "", *tokp = NULL;
    int n_new = 128, threads = 0;
    double temp = 0.8, top_p = 0.9;
    uint64_t seed = 42;
    bool json = false;
    const cli_opt opts[] = {
        {"prompt", 'p', OPT_STR, &prompt, "TEXT", "prompt (default: start from BOS alone)"},
        {"n", 'n', OPT_INT, &n_new, "N", "tokens to generate (default 128)"},
        {"temp", 0, OPT_FLOAT, &temp, "T", "temperature, 0 = greedy (default 0.8)"},
        {"top-p", 0, OPT_FLOAT, &top_p, "P", "nucleus sampling mass (default 0.9)"},
        {"seed", 0, OPT_U64, &seed, "S", "random seed (default 42)"},
        {"threads", 't', OPT_INT, &threads, "T", "threads (default: OMP_NUM_THREADS or all cores)"},
        {"tokenizer", 0, OPT_STR, &tokp, "FILE", "tokenizer for llama2.c checkpoints"},
        {"json", 0, OPT_FLAG, &json, NULL, "print {\"ids\": [...], \"text\": ...} on stdout"},
    };
    const cli_spec spec = {"generate", "MODEL",
                           "Generate text. Prints the continuation as it is produced; statistics "
                           "go to stderr.",
                           opts, (int)(sizeof opts / sizeof opts[0]), 1, 1};
    const char *pos[1];
    int np, r = cli_parse(&spec, argc, argv, pos, &np);
    if (r != CLI_OK) return cli_exit_code(r);
    if (n_new < 0) return cli_errorf("generate", "-n must be >= 0");
    if (threads < 0) return cli_errorf("generate", "--threads must be >= 0");
    bl_model *m = cli_load_model(pos[0], tokp);
    if (!m) return 1;
    int rc = 1;
    bl_err err = {0};
    bl_state *st = NULL;
    bl_sampler sm = {0};
    int32_t *prompt_ids = NULL, *out_ids = NULL;
    float *logits = NULL;
    size_t n_prompt = 0;
    const int V = m->cfg.vocab_size;
    if (*prompt) {
        prompt_ids = cli_tokenize("generate", m, prompt, strlen(prompt), m->cfg.bos_id >= 0,
                                  &n_prompt);
        if (!prompt_ids) goto done;
    } else {
        if (m->cfg.bos_id < 0) {
            cli_errorf("generate", "the model has no BOS token; give a prompt with -p");
            goto done;
        }
        prompt_ids = malloc(sizeof(int32_t));
        prompt_ids[0] = m->cfg.bos_id;
        n_prompt = 1;
    }
    int ctx = (int)n_prompt + n_new;
    if (ctx > m->cfg.max_seq) ctx = m->cfg.max_seq;
    if ((int)n_prompt >= ctx) {
        cli_errorf("generate", "prompt of %zu tokens does not fit the %d-token context", n_prompt,
                   m->cfg.max_seq);
        goto done;
    }
    logits = malloc((size_t)V * sizeof(float));
    out_ids = malloc(((size_t)n_new + 1) * sizeof(int32_t));
    if (!logits || !out_ids) goto done;
    if (bl_state_new(m, ctx, 256, threads, &st, &err) || bl_sampler_init(&sm, V, (float)temp, (float)top_p,
                                                                seed, &err)) {
        cli_error("generate", &err);
        goto done;
    }
    double t0 = bl_time_s();
    if (bl_forward(st, prompt_ids, (int)n_prompt, logits, false, &err)) {
        cli_error("generate", &err);
        goto done;
    }
    double t1 = bl_time_s();
    int n_out = 0;
    while (n_out < n_new && bl_state_pos(st) < ctx) {
        int32_t next = bl_sample(&sm, logits);
        if (next == m->cfg.eos_id) break;
        out_ids[n_out++] = next;
        if (!json && m->tok) {
            char piece[256];
            size_t k = bl_tokenizer_piece(m->tok, next, piece, sizeof piece);
            fwrite(piece, 1, k, stdout);
            fflush(stdout);
        }
        if (n_out == n_new || bl_state_pos(st) >= ctx) break;
        if (bl_forward(st, &next, 1, logits, false, &err)) {
            cli_error("generate", &err);
            goto done;
        }
    }
    double t2 = bl_time_s();
    if (json) {
        cJSON *o = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(o, "ids");
        for (int i = 0; i < n_out; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(out_ids[i]));
        char *text = NULL;
        size_t tl = 0;
        if (m->tok && bl_tokenizer_decode(m->tok, out_ids, (size_t)n_out, &text, &tl, &err) == 0)
            cJSON_AddStringToObject(o, "text", text);
        free(text);
        cli_print_json(o);
    } else {
        printf("\n");
    }
    fprintf(stderr, "prompt %zu tokens in %.3fs (%.1f tok/s), generated %d tokens in %.3fs "
                    "(%.1f tok/s)\n",
            n_prompt, t1 - t0, (double)n_prompt / (t1 - t0 + 1e-12), n_out, t2 - t1,
            (double)n_out / (t2 - t1 + 1e-12));
    rc = 0;
done:
    bl_sampler_free(&sm);
    bl_state_free(st);
    free(logits);
    free(out_ids);
    free(prompt_ids);
    bl_model_free(m);
    return rc;
}
