/* bitllm synth: a random-weight model with the real dimensions of a known architecture. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bitllm/model.h"
#include "cli.h"
#include "cli_util.h"

int cmd_synth(int argc, char **argv) {
    const char *arch = NULL, *config = NULL, *out = NULL, *dtype_s = "f16";
    int layers = 0;
    bool force = false;
    uint64_t seed = 0;
    const cli_opt opts[] = {
        {"arch", 'a', OPT_STR, &arch, "NAME", "preset dimensions (see below)", CLI_ANY},
        {"config", 'c', OPT_STR, &config, "FILE", "or a Hugging Face config.json", CLI_ANY},
        {"out", 'o', OPT_STR, &out, "OUTDIR",
         "output directory (replaced atomically; an existing one must be a bitllm output)",
         CLI_ANY},
        {"force", 0, OPT_FLAG, &force, NULL,
         "replace OUTDIR even if it is not a bitllm output", CLI_ANY},
        {"dtype", 0, OPT_STR, &dtype_s, "T", "f16 (default), bf16 or f32", CLI_ANY},
        {"layers", 0, OPT_INT, &layers, "N", "override the layer count (e.g. a 2-layer slice)",
         CLI_MIN(1)},
        {"seed", 0, OPT_U64, &seed, "S", "random seed (default 0)", CLI_ANY},
    };
    const cli_spec spec = {"synth", "",
                           "Write a random-weight model (config.json + model.safetensors) with "
                           "real architecture dimensions, for speed and memory measurements.",
                           opts, (int)(sizeof opts / sizeof opts[0]), 0, 0, NULL};
    const char *pos[1];
    int np, r = cli_parse(&spec, argc, argv, pos, &np);
    if (r != CLI_OK) {
        if (r == CLI_HELP) {
            int n;
            const char *const *names = bl_synth_preset_names(&n);
            printf("\npresets:");
            for (int i = 0; i < n; i++) printf(" %s", names[i]);
            printf("\n");
        }
        return cli_exit_code(r);
    }
    if (!out || !arch == !config)
        return cli_errorf("synth", "need -o OUTDIR and exactly one of --arch NAME or --config FILE");
    bl_config c;
    bl_err err = {0};
    if (arch && !bl_synth_preset(arch, &c))
        return cli_errorf("synth", "unknown preset '%s' (see --help)", arch);
    if (config) {
        size_t len;
        char *text = cli_read_text("synth", config, &len);
        if (!text) return 1;
        bl_status s = bl_config_from_hf_json(text, config, &c, &err);
        free(text);
        if (s) return cli_error("synth", &err);
    }
    if (layers > 0) c.n_layers = layers;
    bl_dtype dt = strcmp(dtype_s, "f32") == 0    ? BL_DT_F32
                  : strcmp(dtype_s, "bf16") == 0 ? BL_DT_BF16
                  : strcmp(dtype_s, "f16") == 0  ? BL_DT_F16
                                                 : BL_DT_COUNT;
    if (dt == BL_DT_COUNT) return cli_errorf("synth", "--dtype must be f16, bf16 or f32");
    const char *inputs[] = {config};
    bl_outdir *od = cli_outdir_prepare("synth", out, inputs, 1, force, false);
    if (!od) return 1;
    double t0 = bl_time_s();
    if (bl_synth_model(&c, dt, seed, bl_outdir_path(od), &err)) {
        bl_outdir_abort(od);
        return cli_error("synth", &err);
    }
    if (bl_outdir_commit(od, &err)) return cli_error("synth", &err);
    fprintf(stderr, "wrote %s (%s dims, %d layers, %s) in %.1fs\n", out, arch ? arch : config,
            c.n_layers, dtype_s, bl_time_s() - t0);
    return 0;
}
