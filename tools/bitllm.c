/* bitllm: one tool for loading, quantizing, running and measuring ~1-bit LLMs. This file only
 * dispatches to the subcommands; each parses its own flags (tools/cmd_*.c). */
#include <stdio.h>
#include <string.h>

#include "bitllm/core.h"
#include "bitllm/dist.h"
#include "cli.h"
#include "cli_util.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"info", cmd_info, "architecture, tensors, parameters, size and bpw of a model"},
    {"tokenize", cmd_tokenize, "encode text to token ids"},
    {"generate", cmd_generate, "generate text (greedy or sampled)"},
    {"chat", cmd_chat, "interactive chat in the terminal (or over a pipe)"},
    {"serve", cmd_serve, "OpenAI-compatible HTTP server with continuous batching"},
    {"ppl", cmd_ppl, "perplexity on a text file"},
    {"quantize", cmd_quantize, "quantize a model (any fitted format of `formats`) into a new directory"},
    {"formats", cmd_formats, "the weight formats, their parameters and aliases (what -m accepts)"},
    {"fit", cmd_fit, "fit one matrix (.npy or a model's tensor) with one method and measure it"},
    {"distill", cmd_distill, "quantization-aware distillation of a quantized student from its teacher"},
    {"speed", cmd_speed, "prefill/decode tokens per second and memory of a model"},
    {"bench", cmd_bench, "1-bit kernel benchmark against f32 BLAS and memory bandwidth"},
    {"convert", cmd_convert, "write any loadable model (GGUF, llama2.c, OneBit release) as a bitllm directory"},
    {"synth", cmd_synth, "write a random-weight model with real architecture dimensions"},
    {"eval", cmd_eval, "zero-shot accuracy: piqa, arc, hellaswag, winogrande, boolq, lambada, ..."},
    {"compare", cmd_compare, "methods x bpw on one model: quantize, ppl, zero-shot, report"},
    {"report", cmd_report, "report.md and ppl-vs-bpw plot from a compare folder"},
};

static void usage(FILE *f) {
    fprintf(f, "bitllm %s — quantize LLaMA/Qwen/Mistral models to ~1 bit per weight and run "
               "them on the CPU\n\nusage: bitllm COMMAND [options]   (bitllm COMMAND --help)\n\n"
               "commands:\n",
            BITLLM_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nMODEL is a Hugging Face directory (config.json + safetensors), a .gguf file, or "
               "a llama2.c .bin\n(with --tokenizer FILE). An option's value follows it or an '=' "
               "(--temp 0, --temp=0).\n");
}

/* Runs one command; under mpirun every rank runs it. A failing rank ends the whole job with its
 * exit code (its error, printed with its rank, says why), so no rank waits for it forever. */
static int run_command(const command *c, int argc, char **argv) {
    bl_err err = {0};
    if (bl_dist_init(&argc, &argv, &err) != BL_OK) return cli_error(c->name, &err);
    /* the commands that share their work among MPI ranks (docs/distributed.md) */
    const bool ranks = strcmp(c->name, "quantize") == 0 || strcmp(c->name, "distill") == 0;
    int rc = 2;
    if (bl_dist_size() > 1 && !ranks) {
        cli_errorf(c->name, "runs on one rank only (quantize and distill run under mpirun)");
    } else {
        rc = c->run(argc - 1, argv + 1);
        /* a result that did not reach stdout (full disk, closed pipe) is a failure */
        int out = cli_finish_stdout(c->name);
        rc = rc ? rc : out;
    }
    if (rc) bl_dist_abort(rc); /* under mpirun: ends the other ranks too, or all fail alike */
    bl_dist_finalize();
    return rc;
}

int main(int argc, char **argv) {
    bl_blas_use_cpu_kernels(argv); /* re-executes when OpenBLAS fell back to generic kernels */
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return cli_finish_stdout("help");
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("bitllm %s\n", BITLLM_VERSION);
        return cli_finish_stdout("--version");
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return run_command(&commands[i], argc, argv);
    const char *names[sizeof commands / sizeof commands[0]];
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) names[i] = commands[i].name;
    const int near = cli_nearest(argv[1], strlen(argv[1]), names, (int)(sizeof names / sizeof *names));
    if (near >= 0) {
        fprintf(stderr, "bitllm: unknown command '%s' (did you mean '%s'? bitllm --help lists "
                "them)\n", argv[1], names[near]);
        return 2;
    }
    fprintf(stderr, "bitllm: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
