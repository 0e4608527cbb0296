/* bitllm convert: write any loadable model (GGUF, llama2.c, released OneBit checkpoints, ...) as
 * a bitllm HF-style directory (config.json + model.safetensors + tokenizer). */
#include <stdio.h>

#include "bitllm/quantize.h"
#include "cli.h"
#include "cli_util.h"

int cmd_convert(int argc, char **argv) {
    const char *out = NULL, *tokp = NULL;
    const cli_opt opts[] = {
        {"out", 'o', OPT_STR, &out, "OUTDIR", "output directory"},
        {"tokenizer", 0, OPT_STR, &tokp, "FILE", "tokenizer for llama2.c checkpoints"},
    };
    const cli_spec spec = {"convert", "MODEL",
                           "Write a model in bitllm's directory format: weights and quantized "
                           "layers as they are, GGUF/llama2.c tensors renamed, tokenizer kept.",
                           opts, 2, 1, 1};
    const char *pos[1];
    int np, r = cli_parse(&spec, argc, argv, pos, &np);
    if (r != CLI_OK) return cli_exit_code(r);
    if (!out) return cli_errorf("convert", "missing -o OUTDIR");
    bl_model *m = cli_load_model(pos[0], tokp);
    if (!m) return 1;
    bl_err err = {0};
    int rc = bl_model_save(m, out, NULL, NULL, &err) == BL_OK ? 0 : cli_error("convert", &err);
    if (rc == 0) fprintf(stderr, "wrote %s\n", out);
    bl_model_free(m);
    return rc;
}
