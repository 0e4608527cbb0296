/* bitllm generate: sample a continuation, streaming it to stdout (or as JSON). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_util.h"

/* Writes text to stdout at once (streaming); false when stdout fails (full disk, closed pipe). */
static bool emit(const char *s, size_t n) {
    return (n == 0 || fwrite(s, 1, n, stdout) == n) && fflush(stdout) == 0;
}

int cmd_generate(int argc, char **argv) {
    const char *prompt = "", *tokp = NULL;
    const char *tables_s = NULL, *kv_s = NULL;
    int n_new = 128, threads = 0, top_k = 0;
    double temp = 0.8, top_p = 0.9, min_p = 0.0;
    cli_penalties pen = cli_penalties_default();
    uint64_t seed = 42;
    bool json = false;
    uint64_t given = 0;
    const cli_opt opts[] = {
        {"prompt", 'p', OPT_STR, &prompt, "TEXT", "prompt (default: start from BOS alone)",
         CLI_ANY},
        {"n", 'n', OPT_INT, &n_new, "N", "tokens to generate (default 128)", CLI_MIN(1)},
        {"temp", 0, OPT_FLOAT, &temp, "T",
         "temperature, 0 = greedy, inf = uniform (default 0.8)", .lo = 0,
         .bounds = CLI_LO | CLI_INF},
        CLI_INFERENCE_OPTS(tables_s, kv_s),
        CLI_DECODE_OPTS(top_p, top_k, min_p, seed, tokp, threads),
        CLI_PENALTY_OPTS(pen),
        {"json", 0, OPT_FLAG, &json, NULL, "print {\"ids\": [...], \"text\": ...} on stdout",
         CLI_ANY},
    };
    const cli_spec spec = {"generate", "MODEL",
                           "Generate text. Prints the continuation as it is produced (always "
                           "valid UTF-8: a character split across tokens is written once "
                           "complete, bytes that never form one as U+FFFD); statistics go to "
                           "stderr.",
                           opts, (int)(sizeof opts / sizeof opts[0]), 1, 1, &given};
    const char *pos[1];
    int np, r = cli_parse(&spec, argc, argv, pos, &np);
    if (r != CLI_OK) return cli_exit_code(r);
    if ((r = cli_check_sampling(&spec, temp)) != CLI_OK) return cli_exit_code(r);
    if ((r = cli_check_penalties(&spec, &pen)) != CLI_OK) return cli_exit_code(r);
    bl_load_opts lo = {.tokenizer_path = tokp};
    bl_model *m = cli_load_model_tables("generate", pos[0], &lo, tables_s, kv_s, &r);
    if (!m) return r;
    int rc = 1;
    bl_err err = {0};
    bl_state *st = NULL;
    bl_sampler sm = {0};
    bl_detok dt = {0};
    int32_t *prompt_ids = NULL, *out_ids = NULL;
    float *logits = NULL;
    size_t n_prompt = 0;
    const int V = m->cfg.vocab_size;
    if (*prompt) {
        prompt_ids = cli_tokenize("generate", m, prompt, strlen(prompt), bl_model_adds_bos(m),
                                  &n_prompt);
        if (!prompt_ids) goto done;
    } else {
        if (m->cfg.bos_id < 0) {
            cli_errorf("generate", "the model has no BOS token; give a prompt with -p");
            goto done;
        }
        prompt_ids = malloc(sizeof(int32_t));
        if (!prompt_ids) goto done;
        prompt_ids[0] = m->cfg.bos_id;
        n_prompt = 1;
    }
    if ((int64_t)n_prompt >= m->cfg.max_seq) {
        cli_errorf("generate", "a prompt of %zu tokens leaves no room in the model's %d-token "
                               "context", n_prompt, m->cfg.max_seq);
        goto done;
    }
    int ctx = (int)n_prompt + n_new;
    if (ctx > m->cfg.max_seq) {
        fprintf(stderr, "bitllm generate: at most %d of the %d tokens fit the model's %d-token "
                        "context after the %zu-token prompt\n",
                m->cfg.max_seq - (int)n_prompt, n_new, m->cfg.max_seq, n_prompt);
        ctx = m->cfg.max_seq;
    }
    logits = malloc((size_t)V * sizeof(float));
    out_ids = malloc(((size_t)n_new + 1) * sizeof(int32_t));
    if (!logits || !out_ids) {
        cli_errorf("generate", "out of memory");
        goto done;
    }
    const bl_penalties penalties = cli_penalties_value(&pen);
    if (bl_state_new(m, ctx, 256, threads, &st, &err) ||
        bl_sampler_init(&sm, V, (float)temp, (float)top_p, seed, &err) ||
        bl_sampler_set_filters(&sm, top_k, (float)min_p, &err) ||
        bl_sampler_set_penalties(&sm, &penalties, &err) ||
        (m->tok && bl_detok_init(&dt, m->tok, &err))) {
        cli_error("generate", &err);
        goto done;
    }
    for (size_t i = 0; i < n_prompt; i++) bl_sampler_accept(&sm, prompt_ids[i]);
    double t0 = bl_time_s();
    if (bl_forward(st, prompt_ids, (int)n_prompt, logits, false, &err)) {
        bl_fail_context(&err, err.code, "prompt");
        cli_error("generate", &err);
        goto done;
    }
    double t1 = bl_time_s();
    int n_out = 0;
    while (n_out < n_new && bl_state_pos(st) < ctx) {
        int32_t next = bl_sample(&sm, logits);
        if (next < 0) { /* bl_forward refuses non-finite logits; this is the last guard */
            cli_errorf("generate", "%s: non-finite logits at token %d", m->path, n_out + 1);
            goto done;
        }
        if (next == m->cfg.eos_id) break;
        out_ids[n_out++] = next;
        bl_sampler_accept(&sm, next);
        if (!json && m->tok) {
            size_t k;
            const char *piece = bl_detok_push(&dt, next, &k);
            if (!emit(piece, k)) goto done; /* the error is reported on exit */
        }
        if (n_out == n_new || bl_state_pos(st) >= ctx) break;
        if (bl_forward(st, &next, 1, logits, false, &err)) {
            if (!json) emit("\n", 1);
            bl_fail_context(&err, err.code, "generating token %d", n_out + 1);
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
        if (m->tok && bl_tokenizer_decode(m->tok, out_ids, (size_t)n_out, &text, &tl, &err)) {
            cJSON_Delete(o);
            cli_error("generate", &err);
            goto done;
        }
        if (text) cJSON_AddStringToObject(o, "text", text);
        free(text);
        cli_print_json(o);
    } else {
        size_t k = 0;
        const char *tail = m->tok ? bl_detok_finish(&dt, &k) : "";
        if (!emit(tail, k) || !emit("\n", 1)) goto done;
    }
    fprintf(stderr, "prompt %zu tokens in %.3fs (%.1f tok/s), generated %d tokens in %.3fs "
                    "(%.1f tok/s)\n",
            n_prompt, t1 - t0, (double)n_prompt / (t1 - t0 + 1e-12), n_out, t2 - t1,
            (double)n_out / (t2 - t1 + 1e-12));
    rc = 0;
done:
    bl_detok_free(&dt);
    bl_sampler_free(&sm);
    bl_state_free(st);
    free(logits);
    free(out_ids);
    free(prompt_ids);
    bl_model_free(m);
    return rc;
}
