/* bitllm info: what a checkpoint holds. */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "cli_util.h"

static const char *source_name(bl_source s) {
    return s == BL_SRC_HF ? "safetensors" : s == BL_SRC_GGUF ? "gguf" : "llama2c";
}

static cJSON *config_json(const bl_config *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "arch", bl_arch_name(c->arch));
    cJSON_AddNumberToObject(o, "dim", c->dim);
    cJSON_AddNumberToObject(o, "hidden_dim", c->hidden_dim);
    cJSON_AddNumberToObject(o, "n_layers", c->n_layers);
    cJSON_AddNumberToObject(o, "n_heads", c->n_heads);
    cJSON_AddNumberToObject(o, "n_kv_heads", c->n_kv_heads);
    cJSON_AddNumberToObject(o, "head_dim", c->head_dim);
    cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(o, "max_seq", c->max_seq);
    cJSON_AddNumberToObject(o, "rope_theta", c->rope_theta);
    cJSON_AddNumberToObject(o, "norm_eps", c->norm_eps);
    cJSON_AddBoolToObject(o, "rope_interleaved", c->rope_interleaved);
    cJSON_AddBoolToObject(o, "rope_llama3", c->rope_llama3);
    cJSON_AddNumberToObject(o, "rope_linear", c->rope_linear);
    cJSON_AddNumberToObject(o, "sliding_window", c->sliding_window);
    cJSON_AddBoolToObject(o, "tied_embeddings", c->tied_embeddings);
    cJSON_AddBoolToObject(o, "qkv_bias", c->qkv_bias);
    cJSON_AddBoolToObject(o, "qk_norm", c->qk_norm);
    cJSON_AddNumberToObject(o, "bos_id", c->bos_id);
    cJSON_AddNumberToObject(o, "eos_id", c->eos_id);
    return o;
}

static cJSON *shape_json(const int64_t *shape, int ndim) {
    cJSON *a = cJSON_CreateArray();
    for (int d = 0; d < ndim; d++) cJSON_AddItemToArray(a, cJSON_CreateNumber((double)shape[d]));
    return a;
}

int cmd_info(int argc, char **argv) {
    const char *tokp = NULL;
    bool json = false, tensors = false;
    const cli_opt opts[] = {
        {"tokenizer", 0, OPT_STR, &tokp, "FILE", "tokenizer for llama2.c checkpoints", CLI_ANY},
        {"tensors", 0, OPT_FLAG, &tensors, NULL, "list every tensor (always in --json)", CLI_ANY},
        {"json", 0, OPT_FLAG, &json, NULL, "print one JSON object on stdout", CLI_ANY},
    };
    uint64_t given = 0;
    const cli_spec spec = {"info", "MODEL",
                           "Architecture, dimensions, tensors, parameter count, size, and the "
                           "format and bpw of each quantized layer.",
                           opts, 3, 1, 1, &given};
    const char *pos[1];
    int np, r = cli_parse(&spec, argc, argv, pos, &np);
    if (r != CLI_OK) return cli_exit_code(r);
    if (json && tensors) {
        cli_errorf("info", "--tensors has no effect with --json (which lists every tensor)");
        return 2;
    }
    bl_model *m = cli_load_model(pos[0], tokp);
    if (!m) return 1;
    /* how the token embeddings and the output head are stored (quantize --embed / --head) */
    const char *emb_fmt = m->embed.ops ? m->embed.ops->name : bl_dtype_info(m->tok_embd.dtype)->name;
    const double emb_bpw = m->embed.ops ? bl_linear_bpw(&m->embed)
                                        : (double)bl_dtype_info(m->tok_embd.dtype)->block_bytes * 8.0 /
                                              (double)bl_dtype_info(m->tok_embd.dtype)->block;
    const char *head_fmt = m->output.ops->name;
    const double head_bpw = bl_linear_bpw(&m->output);
    const bl_config *c = &m->cfg;
    double bpw_layers, bpw_model;
    bl_model_bpw(m, &bpw_layers, &bpw_model);
    int64_t params = bl_model_param_count(m);
    uint64_t bytes = (bl_model_weight_bits(m) + 7) / 8;
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "path", m->path);
        cJSON_AddStringToObject(o, "source", source_name(m->source));
        cJSON_AddStringToObject(o, "arch", bl_arch_name(c->arch));
        cJSON_AddItemToObject(o, "config", config_json(c));
        cJSON_AddNumberToObject(o, "params", (double)params);
        cJSON_AddNumberToObject(o, "weight_bytes", (double)bytes);
        cJSON_AddNumberToObject(o, "bpw_layers", bpw_layers);
        cJSON_AddNumberToObject(o, "bpw_model", bpw_model);
        cJSON_AddStringToObject(o, "quantization", m->quant_method[0] ? m->quant_method : "none");
        cJSON_AddNumberToObject(o, "tokenizer_vocab",
                                m->tok ? bl_tokenizer_vocab_size(m->tok) : 0);
        cJSON_AddBoolToObject(o, "adds_bos", bl_model_adds_bos(m));
        cJSON *eo = cJSON_AddObjectToObject(o, "embeddings");
        cJSON_AddStringToObject(eo, "format", emb_fmt);
        cJSON_AddNumberToObject(eo, "bpw", emb_bpw);
        cJSON *ho = cJSON_AddObjectToObject(o, "head");
        cJSON_AddStringToObject(ho, "format", c->tied_embeddings ? "tied" : head_fmt);
        cJSON_AddNumberToObject(ho, "bpw", head_bpw);
        cJSON *ts = cJSON_AddArrayToObject(o, "tensors");
        for (int i = 0; i < m->tensors.n; i++) {
            const bl_tensor *t = &m->tensors.t[i];
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "name", t->name);
            cJSON_AddStringToObject(e, "dtype", bl_dtype_info(t->dtype)->name);
            cJSON_AddItemToObject(e, "shape", shape_json(t->shape, t->ndim));
            cJSON_AddNumberToObject(e, "bytes", (double)t->nbytes);
            cJSON_AddItemToArray(ts, e);
        }
        cJSON *ls = cJSON_AddArrayToObject(o, "layers");
        for (int l = 0; l < c->n_layers; l++)
            for (int p = 0; p < BL_PROJ_COUNT; p++) {
                const bl_linear *L = &m->layers[l].proj[p];
                char name[96];
                bl_proj_name(l, p, name, sizeof name);
                cJSON *e = cJSON_CreateObject();
                cJSON_AddStringToObject(e, "name", name);
                cJSON_AddStringToObject(e, "format", L->ops->name);
                int64_t sh[2] = {L->m, L->n};
                cJSON_AddItemToObject(e, "shape", shape_json(sh, 2));
                cJSON_AddNumberToObject(e, "bpw", bl_linear_bpw(L));
                cJSON_AddItemToArray(ls, e);
            }
        cli_print_json(o);
    } else {
        printf("model        %s (%s)\n", m->path, source_name(m->source));
        printf("architecture %s: dim %d, hidden %d, %d layers, %d heads (%d kv, head_dim %d), "
               "vocab %d, ctx %d\n",
               bl_arch_name(c->arch), c->dim, c->hidden_dim, c->n_layers, c->n_heads,
               c->n_kv_heads, c->head_dim, c->vocab_size, c->max_seq);
        char lin[48] = "";
        if (c->rope_linear > 0.0f)
            snprintf(lin, sizeof lin, ", linear scaling %g", (double)c->rope_linear);
        printf("rope         theta %g, %s pairs%s%s; norm eps %g; %s embeddings%s%s\n",
               c->rope_theta, c->rope_interleaved ? "interleaved" : "rotate-half",
               c->rope_llama3 ? ", llama3 scaling" : "", lin, c->norm_eps,
               c->tied_embeddings ? "tied" : "untied", c->qkv_bias ? "; qkv bias" : "",
               c->qk_norm ? "; q/k norm" : "");
        if (c->sliding_window > 0)
            printf("attention    a sliding window of %d positions\n", c->sliding_window);
        printf("parameters   %lld (%.2f M), weights %.2f MiB\n", (long long)params, params / 1e6,
               bytes / 1048576.0);
        printf("bpw          %.4f in the q,k,v,o,gate,up,down projections, %.4f over the whole "
               "model%s%s\n",
               bpw_layers, bpw_model, m->quant_method[0] ? "; quantized with " : "",
               m->quant_method);
        printf("embeddings   %s, %.4f bpw; output head %s, %.4f bpw\n", emb_fmt, emb_bpw,
               c->tied_embeddings ? "tied to them" : head_fmt, head_bpw);
        printf("tokenizer    %s%s\n",
               m->tok ? (bl_tokenizer_kind(m->tok) == BL_TOK_SPM ? "sentencepiece bpe"
                                                                : "byte-level bpe")
                      : "none (pass --tokenizer)",
               !m->tok ? "" : bl_model_adds_bos(m) ? "; texts start with BOS" : "; no BOS prepended");
        printf("layers:\n");
        for (int l = 0; l < c->n_layers; l++)
            for (int p = 0; p < BL_PROJ_COUNT; p++) {
                const bl_linear *L = &m->layers[l].proj[p];
                printf("  model.layers.%d.%-18s %-7s [%lld, %lld]  %.4f bpw\n", l,
                       bl_proj_hf_name(p), L->ops->name, (long long)L->m, (long long)L->n,
                       bl_linear_bpw(L));
            }
        if (tensors) {
            printf("tensors (%d):\n", m->tensors.n);
            for (int i = 0; i < m->tensors.n; i++) {
                const bl_tensor *t = &m->tensors.t[i];
                printf("  %-48s %-5s [", t->name, bl_dtype_info(t->dtype)->name);
                for (int d = 0; d < t->ndim; d++)
                    printf("%s%lld", d ? ", " : "", (long long)t->shape[d]);
                printf("]\n");
            }
        }
    }
    bl_model_free(m);
    return 0;
}
