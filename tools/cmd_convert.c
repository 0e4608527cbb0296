/* bitllm convert: write any loadable model (GGUF, llama2.c, released OneBit checkpoints, ...) as
 * a bitllm HF-style directory (config.json + model.safetensors + tokenizer). */
#include <stdio.h>

#include "bitllm/quantize.h"
#include "cli.h"
#include "cli_util.h"

int cmd_convert(int argc, char **argv) {
    const char *out = NULL, *tokp = NULL;
    bool force = false;
    const cli_opt opts[] = {
        {"out", 'o', OPT_STR, &out, "OUTDIR",
         "output directory (written beside it, then moved into place; an existing one must be a "
         "bitllm output)", CLI_ANY},
        {"force", 0, OPT_FLAG, &force, NULL,
         "replace OUTDIR even if it is not a bitllm output (never an input)", CLI_ANY},
        {"tokenizer", 0, OPT_STR, &tokp, "FILE", "tokenizer for llama2.c checkpoints", CLI_ANY},
    };
    const cli_spec spec = {"convert", "MODEL",
                           "Write a model in bitllm's directory format: weights and quantized "
                           "layers as they are, GGUF/llama2.c tensors renamed, tokenizer kept.",
                           opts, (int)(sizeof opts / sizeof opts[0]), 1, 1, NULL};
    const char *pos[1];
    int np, r = cli_parse(&spec, argc, argv, pos, &np);
    if (r != CLI_OK) return cli_exit_code(r);
    if (!out) return cli_errorf("convert", "missing -o OUTDIR");
    bl_err err = {0};
    const char *inputs[] = {pos[0], tokp};
    bl_outdir *od = cli_outdir_prepare("convert", out, inputs, 2, force, false);
    if (!od) return 1;
    bl_model *m = cli_load_model(pos[0], tokp);
    if (!m) {
        bl_outdir_abort(od);
        return 1;
    }
    int rc = 0;
    if (bl_model_save(m, bl_outdir_path(od), NULL, NULL, &err) != BL_OK) {
        bl_outdir_abort(od);
        rc = cli_error("convert", &err);
    } else if (bl_outdir_commit(od, &err) != BL_OK) {
        rc = cli_error("convert", &err);
    } else {
        fprintf(stderr, "wrote %s\n", out);
    }
    bl_model_free(m);
    return rc;
}
