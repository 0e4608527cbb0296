/* bitllm speed: end-to-end prefill and decode throughput and memory of any loadable model. */
#include <stdio.h>
#include <stdlib.h>

#include "bitllm/model.h"
#include "cli.h"
#include "cli_util.h"

#define MAX_BATCHES 16

/* Best decode time (wall, and process CPU time: all threads, steadier than wall time on a shared
 * machine) over reps of `steps` steps of b sequences (slots 0..b-1, each primed with the same
 * prompt), and the best prefill time of slot 0's prompt; false on error (err set). */
static bool measure(bl_state *st, const int32_t *toks, int n_prompt, int b, int steps, int reps,
                    float *logits, int V, bl_seq_batch *seqs, double *pre, double *dec,
                    double *dec_cpu, bl_err *err) {
    *pre = *dec = *dec_cpu = 1e30;
    for (int rep = 0; rep < reps; rep++) {
        for (int s = 0; s < b; s++) bl_state_slot_truncate(st, s, 0);
        /* prefill: slot 0's prompt is timed; the other slots get the same prompt untimed */
        bl_seq_batch p = {0, toks, n_prompt, logits, false};
        const double a = bl_time_s();
        if (bl_forward_batch(st, &p, 1, err)) return false;
        const double t1 = bl_time_s();
        for (p.slot = 1; p.slot < b; p.slot++)
            if (bl_forward_batch(st, &p, 1, err)) return false;
        /* decode: each step runs one new token of every sequence, with the logits of each */
        const double c0 = bl_time_s(), u0 = bl_cpu_time_s();
        for (int i = 0; i < steps; i++) {
            for (int s = 0; s < b; s++)
                seqs[s] = (bl_seq_batch){s, toks + n_prompt + i, 1, logits + (size_t)s * V, false};
            if (bl_forward_batch(st, seqs, b, err)) return false;
        }
        const double c = bl_time_s(), u = bl_cpu_time_s();
        if (u - u0 < *dec_cpu) *dec_cpu = u - u0;
        if (t1 - a < *pre) *pre = t1 - a;
        if (c - c0 < *dec) *dec = c - c0;
    }
    return true;
}

int cmd_speed(int argc, char **argv) {
    const char *tokp = NULL, *isa_s = NULL, *batch_s = "1", *tables_s = NULL, *kv_s = NULL;
    int n_gen = 32, n_prompt = 128, threads = 0, reps = 1;
    bool json = false, no_mmap = false;
    const cli_opt opts[] = {
        {"n", 'n', OPT_INT, &n_gen, "N",
         "tokens to decode at each batch size (default 32; a multiple of every B)", CLI_MIN(1)},
        {"prompt", 'p', OPT_INT, &n_prompt, "P", "prompt tokens processed as one batch (default 128)",
         CLI_MIN(1)},
        {"batch", 'b', OPT_STR, &batch_s, "LIST",
         "decode B sequences together, one token each per step, as a server does (each with the "
         "same prompt in its own KV-cache slot); a list such as 1,2,4,8 measures each, with its "
         "throughput against the first (default 1; B from 1 to 256)",
         CLI_ANY},
        {"threads", 't', OPT_INT, &threads, "T",
         "threads (default: OMP_NUM_THREADS or all cores)", CLI_THREADS},
        {"reps", 'r', OPT_INT, &reps, "R", "repetitions; the best is reported (default 1)",
         CLI_MIN(1)},
        {"isa", 0, OPT_STR, &isa_s, "NAME", "kernel level: auto, ref, avx2, avx512 (default auto)",
         CLI_ANY},
        CLI_INFERENCE_OPTS(tables_s, kv_s),
        {"tokenizer", 0, OPT_STR, &tokp, "FILE", "tokenizer for llama2.c checkpoints", CLI_ANY},
        {"no-mmap", 0, OPT_FLAG, &no_mmap, NULL,
         "read the weights into private memory instead of mapping the files (as BITLLM_LOAD=read)",
         CLI_ANY},
        {"json", 0, OPT_FLAG, &json, NULL, "print one JSON object on stdout", CLI_ANY},
    };
    const cli_spec spec = {"speed", "MODEL",
                           "Prefill (one batch of P tokens) and decode (N tokens, B sequences "
                           "per step) throughput, resident memory and weight size of a model.",
                           opts, (int)(sizeof opts / sizeof opts[0]), 1, 1, NULL};
    const char *pos[1];
    int np, r = cli_parse(&spec, argc, argv, pos, &np);
    if (r != CLI_OK) return cli_exit_code(r);
    int batches[MAX_BATCHES], nb = cli_parse_int_list(batch_s, 1, 256, batches, MAX_BATCHES);
    if (nb <= 0)
        return cli_errorf("speed", "invalid value '%s' for --batch (whole numbers from 1 to 256, "
                          "comma-separated, at most %d)", batch_s, MAX_BATCHES);
    int bmax = 1, max_steps = 1;
    for (int k = 0; k < nb; k++) {
        if (n_gen % batches[k])
            return cli_errorf("speed", "-n %d is not a multiple of --batch %d", n_gen, batches[k]);
        if (batches[k] > bmax) bmax = batches[k];
        if (n_gen / batches[k] > max_steps) max_steps = n_gen / batches[k];
    }
    bl_load_opts lo = {.tokenizer_path = tokp, .load = no_mmap ? BL_LOAD_READ : BL_LOAD_DEFAULT,
                       .n_threads = threads};
    if (isa_s && !bl_isa_from_name(isa_s, &lo.isa))
        return cli_errorf("speed", "unknown --isa '%s' (auto, ref, avx2, avx512)", isa_s);
    double t0 = bl_time_s();
    bl_model *m = cli_load_model_tables("speed", pos[0], &lo, tables_s, kv_s, &r);
    if (!m) return r;
    double load_s = bl_time_s() - t0;
    const char *load_mode = m->load_mode == BL_LOAD_READ ? "read" : "mmap";
    const int ctx = n_prompt + max_steps, V = m->cfg.vocab_size;
    if (ctx > m->cfg.max_seq) {
        bl_model_free(m);
        return cli_errorf("speed", "prompt + decode = %d tokens exceeds the model's context %d", ctx,
                          m->cfg.max_seq);
    }
    int32_t *toks = malloc(sizeof(int32_t) * (size_t)ctx);
    float *logits = malloc(sizeof(float) * (size_t)V * (size_t)bmax);
    bl_seq_batch *seqs = calloc((size_t)bmax, sizeof *seqs);
    bl_state *st = NULL;
    bl_err err = {0};
    int rc = 1;
    double pre[MAX_BATCHES], dec[MAX_BATCHES], cpu[MAX_BATCHES];
    if (!toks || !logits || !seqs) goto done;
    /* Deterministic token ids; their values do not affect the cost. */
    for (int i = 0; i < ctx; i++) toks[i] = (int32_t)((i * 2654435761u) % (unsigned)V);
    if (bl_state_new_slots(m, bmax, ctx, n_prompt > bmax ? n_prompt : bmax, threads, &st,
                           &err)) {
        cli_error("speed", &err);
        goto done;
    }
    for (int k = 0; k < nb; k++)
        if (!measure(st, toks, n_prompt, batches[k], n_gen / batches[k], reps, logits, V, seqs,
                     &pre[k], &dec[k], &cpu[k], &err)) {
            cli_error("speed", &err);
            goto done;
        }
    double bpw_layers, bpw_model;
    bl_model_bpw(m, &bpw_layers, &bpw_model);
    const double wbytes = (double)bl_model_weight_bits(m) / 8.0;
    const double pre_tps = n_prompt / pre[0], dec_tps = n_gen / dec[0];
    const double rss = (double)bl_current_rss_bytes(), peak = (double)bl_peak_rss_bytes();
    const int nt = bl_state_threads(st);
    double load[1] = {0.0};
    if (getloadavg(load, 1) != 1) load[0] = -1.0;
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", m->path);
        cJSON_AddStringToObject(o, "method", m->quant_method[0] ? m->quant_method : "fp");
        cJSON_AddNumberToObject(o, "threads", nt);
        cJSON_AddStringToObject(o, "isa", bl_isa_name(m->isa));
        cJSON_AddStringToObject(o, "sign_tables", bl_sign_tables_name(m->sign_tables));
        cJSON_AddStringToObject(o, "kv_cache", bl_kv_cache_name(m->kv_cache));
        cJSON_AddNumberToObject(o, "prompt_tokens", n_prompt);
        cJSON_AddNumberToObject(o, "decode_tokens", n_gen);
        cJSON_AddNumberToObject(o, "decode_batch", batches[0]);
        cJSON_AddNumberToObject(o, "prefill_tps", pre_tps);
        cJSON_AddNumberToObject(o, "decode_tps", dec_tps);
        cJSON_AddNumberToObject(o, "decode_step_ms", 1e3 * dec[0] / (n_gen / batches[0]));
        cJSON_AddNumberToObject(o, "decode_cpu_ms_per_token", 1e3 * cpu[0] / n_gen);
        cJSON *arr = cJSON_AddArrayToObject(o, "decode");
        for (int k = 0; k < nb; k++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "batch", batches[k]);
            cJSON_AddNumberToObject(e, "steps", n_gen / batches[k]);
            cJSON_AddNumberToObject(e, "decode_tps", n_gen / dec[k]);
            cJSON_AddNumberToObject(e, "step_ms", 1e3 * dec[k] / (n_gen / batches[k]));
            cJSON_AddNumberToObject(e, "vs_first", dec[0] / dec[k]);
            cJSON_AddNumberToObject(e, "cpu_ms_per_token", 1e3 * cpu[k] / n_gen);
            cJSON_AddNumberToObject(e, "cpu_vs_first", cpu[0] / cpu[k]);
            cJSON_AddItemToArray(arr, e);
        }
        cJSON_AddNumberToObject(o, "load_seconds", load_s);
        cJSON_AddStringToObject(o, "load_mode", load_mode);
        cJSON_AddNumberToObject(o, "weight_bytes", wbytes);
        cJSON_AddNumberToObject(o, "bpw_layers", bpw_layers);
        cJSON_AddNumberToObject(o, "bpw_model", bpw_model);
        cJSON_AddNumberToObject(o, "rss_bytes", rss);
        cJSON_AddNumberToObject(o, "peak_rss_bytes", peak);
        cJSON_AddNumberToObject(o, "load_average", load[0]);
        cli_print_json(o);
    } else {
        printf("model    %s (%s, %.3f bpw layers / %.3f model, weights %.1f MiB)\n", m->path,
               m->quant_method[0] ? m->quant_method : "fp", bpw_layers, bpw_model,
               wbytes / 1048576.0);
        printf("threads  %d, kernels %s, sign tables %s, KV cache %s, load average %.2f\n", nt,
               bl_isa_name(m->isa), bl_sign_tables_name(m->sign_tables), bl_kv_cache_name(m->kv_cache),
               load[0]);
        printf("prefill  %8.1f tok/s  (%d tokens in one batch, %.3fs)\n", pre_tps, n_prompt,
               pre[0]);
        for (int k = 0; k < nb; k++) {
            const int b = batches[k], steps = n_gen / b;
            char vs[96] = "";
            if (k > 0)
                snprintf(vs, sizeof vs, "; %.2fx batch %d, by CPU time %.2fx", dec[0] / dec[k],
                         batches[0], cpu[0] / cpu[k]);
            if (b > 1)
                printf("decode   %8.2f tok/s  (%d tokens: %d sequences x %d steps, %.1f ms/step, "
                       "CPU %.1f ms/token%s)\n", n_gen / dec[k], n_gen, b, steps,
                       1e3 * dec[k] / steps, 1e3 * cpu[k] / n_gen, vs);
            else
                printf("decode   %8.2f tok/s  (%d tokens, %.1f ms/token, CPU %.1f ms/token%s)\n",
                       n_gen / dec[k], n_gen, 1e3 * dec[k] / n_gen, 1e3 * cpu[k] / n_gen, vs);
        }
        printf("memory   %.1f MiB resident, %.1f MiB peak (load %.2fs, %s)\n", rss / 1048576.0,
               peak / 1048576.0, load_s, load_mode);
    }
    rc = 0;
done:
    free(seqs);
    bl_state_free(st);
    free(toks);
    free(logits);
    bl_model_free(m);
    return rc;
}
