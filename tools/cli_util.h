/* Shared plumbing of the subcommands: a declarative flag parser with generated --help, model
 * loading with error reporting, progress lines and JSON output. */
#ifndef BITLLM_CLI_UTIL_H
#define BITLLM_CLI_UTIL_H

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>

#include "bitllm/model.h"
#include "bitllm/pool.h"
#include "bitllm/quantize.h"

typedef enum { OPT_FLAG, OPT_STR, OPT_INT, OPT_FLOAT, OPT_U64 } cli_opt_kind;

/* Allowed values of a numeric option, checked by the parser: bounds set by the macros below
 * (none: any value of the type). Floats are never NaN, and infinite only with CLI_INF. */
enum { CLI_LO = 1, CLI_LO_OPEN = 2, CLI_HI = 4, CLI_HI_OPEN = 8, CLI_INF = 16 };
#define CLI_ANY .bounds = 0                                         /* no constraint */
#define CLI_MIN(x) .lo = (x), .bounds = CLI_LO                      /* >= x */
#define CLI_ABOVE(x) .lo = (x), .bounds = CLI_LO | CLI_LO_OPEN      /* > x */
#define CLI_RANGE(a, b) .lo = (a), .hi = (b), .bounds = CLI_LO | CLI_HI         /* [a, b] */
/* a thread count: 1 up to what the thread pool holds */
#define CLI_THREADS CLI_RANGE(1, BL_POOL_MAX_THREADS)
#define CLI_RANGE_LO_OPEN(a, b) .lo = (a), .hi = (b), .bounds = CLI_LO | CLI_LO_OPEN | CLI_HI

typedef struct {
    const char *name;     /* long name without dashes */
    char short_name;      /* 0 if none */
    cli_opt_kind kind;
    void *dest;           /* bool*, const char**, int*, double*, uint64_t* */
    const char *metavar;
    const char *help;
    /* optional, by designated initializer: */
    double lo, hi;        /* numeric range (with bounds) */
    int bounds;           /* CLI_LO | CLI_HI | ... ; 0 = any value */
    const char *needs;    /* another option that must be given with this one */
    int tag;              /* the command's own use (e.g. which method parameter it sets) */
} cli_opt;

/* The decoding options that generate and chat share (one table entry each, same defaults). */
#define CLI_DECODE_OPTS(top_p, top_k, min_p, seed, tokenizer, threads)                           \
    {"top-p", 0, OPT_FLOAT, &(top_p), "P", "nucleus sampling mass in (0, 1] (default 0.9)",       \
     CLI_RANGE_LO_OPEN(0, 1)},                                                                     \
    {"top-k", 0, OPT_INT, &(top_k), "K",                                                           \
     "sample from the K most likely tokens only (default 0 = off)", CLI_MIN(0)},                   \
    {"min-p", 0, OPT_FLOAT, &(min_p), "P",                                                         \
     "drop tokens less than P times as likely as the most likely one, P in [0, 1] "                \
     "(default 0 = off)", CLI_RANGE(0, 1)},                                                        \
    {"seed", 0, OPT_U64, &(seed), "S", "random seed (default 42)", CLI_ANY},                      \
    {"tokenizer", 0, OPT_STR, &(tokenizer), "FILE", "tokenizer for llama2.c checkpoints",         \
     CLI_ANY},                                                                                     \
    {"threads", 't', OPT_INT, &(threads), "T", "threads (default: OMP_NUM_THREADS or all cores)", \
     CLI_THREADS}

/* --sign-tables and --kv-cache, on every command that runs a model: how its 1-bit products sum
 * and what its KV cache holds. */
#define CLI_INFERENCE_OPTS(name, kv)                                                             \
    {"kv-cache", 0, OPT_STR, &(kv), "f32|f16|q8",                                                \
     "KV cache values: f32 (the default), f16 (half the memory and the attention's reads; keys " \
     "and values rounded to FP16, as llama.cpp's default cache) or q8 (int8 with a scale per 32 "\
     "values, 9 bits a value, as llama.cpp's q8_0 cache type); f16 and q8 change the numbers",   \
     CLI_ANY},                                                                                    \
    {"sign-tables", 0, OPT_STR, &(name), "f32|i8",                                                \
     "sums of the 1-bit kernels: f32 (exact, the default) or i8 (int8 lookup tables with a "     \
     "step per 32 inputs, and q8_0/q4_0 matrices such as a quantized head on int8 inputs: "       \
     "faster, batched decoding most; changes the numbers, docs/serve.md)",                        \
     CLI_ANY}
/* Loads path with opts, a --sign-tables value (tables; NULL: f32) and a --kv-cache value (kv;
 * NULL: f32). NULL on failure with *rc the exit code: 2 for an unknown value or i8 on a model
 * without 1-bit layers or q8_0/q4_0 matrices (the flag would do nothing), 1 when loading fails.
 * i8 without its SIMD kernel on this CPU runs, with a warning. */
bl_model *cli_load_model_tables(const char *cmd, const char *path, bl_load_opts *opts,
                                const char *tables, const char *kv, int *rc);

/* The penalties on recent tokens that generate and chat share (bl_penalties, as doubles for the
 * parser). */
typedef struct {
    double repeat, presence, frequency;
    int last_n;
} cli_penalties;
#define CLI_PENALTY_OPTS(p)                                                                        \
    {"repeat-penalty", 0, OPT_FLOAT, &(p).repeat, "F",                                            \
     "divide the positive logits of the tokens in the penalty window by F and multiply the "     \
     "negative ones (llama.cpp's; default 1 = none)", CLI_ABOVE(0)},                              \
    {"presence-penalty", 0, OPT_FLOAT, &(p).presence, "F",                                        \
     "subtract F from the logit of every token in the window (OpenAI's; default 0)", CLI_ANY},   \
    {"frequency-penalty", 0, OPT_FLOAT, &(p).frequency, "F",                                      \
     "subtract F times a token's count in the window from its logit (OpenAI's; default 0)",      \
     CLI_ANY},                                                                                     \
    {"repeat-last-n", 0, OPT_INT, &(p).last_n, "N",                                               \
     "the penalty window: the last N tokens, prompt included; -1 = all (default 64)",            \
     CLI_MIN(-1)}
static inline cli_penalties cli_penalties_default(void) {
    const bl_penalties off = BL_PENALTIES_OFF;
    return (cli_penalties){off.repeat, off.presence, off.frequency, off.last_n};
}
static inline bl_penalties cli_penalties_value(const cli_penalties *p) {
    return (bl_penalties){(float)p->repeat, (float)p->presence, (float)p->frequency, p->last_n};
}

typedef struct {
    const char *name;     /* subcommand */
    const char *args;     /* positional arguments, e.g. "MODEL" */
    const char *summary;
    const cli_opt *opts;
    int n_opts;           /* at most 64 */
    int min_pos, max_pos;
    uint64_t *given;      /* optional: receives bit i set when opts[i] was on the command line */
} cli_spec;

enum { CLI_OK = 0, CLI_HELP = 1, CLI_USAGE = 2 };
/* Parses argv (argv[0] is the subcommand name). Positional arguments land in pos[]. Every value
 * is checked whole (no trailing characters, in range, finite unless allowed); an option given
 * twice, or without the option it needs, is an error. Returns CLI_OK, CLI_HELP (help printed to
 * stdout) or CLI_USAGE (message printed to stderr). */
int cli_parse(const cli_spec *spec, int argc, char **argv, const char **pos, int *n_pos);
/* Whether the option called name was given (spec->given must be set). */
bool cli_given(const cli_spec *spec, const char *name);
/* The option called name (NULL if none). */
const cli_opt *cli_find(const cli_spec *spec, const char *name);
/* Options that only some methods read carry their parameter in tag (BL_QP_x + 1); the format's
 * traits (bl_method_uses) say which method reads which. */
#define USES(p) .tag = (p) + 1
/* 0 when every option given on the command line is read by m (with random factors or not),
 * else 2 with the error printed: the formats' traits decide for every command that fits. */
int cli_check_method_opts(const char *cmd, const cli_spec *spec, const bl_method *m,
                          bool random_factors, const char *method);
/* -m SPEC into *m (bl_method_parse), then the options that set a format parameter
 * (--envelope-rank, --paths, --group: an int option whose tag the format's schema names) are
 * applied, and every given option is checked with cli_check_method_opts. 0, or 2 with the error
 * printed. */
int cli_method(const char *cmd, const cli_spec *spec, const char *method, bool random_factors,
               bl_method *m);
/* The option-setting part of cli_method alone. */
int cli_method_flags(const char *cmd, const cli_spec *spec, const char *method, bl_method *m);
/* Adds the format parameters that an option sets and m reads, under the option's name
 * ("envelope_rank": 2, "paths": 1, "group": 64), as the checkpoint's provenance records them. */
void cli_method_params_json(const bl_method *m, cJSON *j);
/* Sampling flags: --top-p and --seed are refused with --temp 0 (greedy decoding uses neither);
 * prints the error and returns CLI_USAGE, else CLI_OK (spec->given must be set). */
int cli_check_sampling(const cli_spec *spec, double temp);
/* --repeat-last-n is refused when no penalty is set (it would change nothing). */
int cli_check_penalties(const cli_spec *spec, const cli_penalties *p);
/* Exit code for a parse result that is not CLI_OK. */
static inline int cli_exit_code(int parse_result) { return parse_result == CLI_HELP ? 0 : 2; }

/* Loads a model (printing the error on failure). tokenizer may be NULL. */
bl_model *cli_load_model(const char *path, const char *tokenizer);
bl_model *cli_load_model_opts(const char *path, const bl_load_opts *opts);
/* Prints "bitllm <cmd>: <message>" to stderr and returns 1. */
int cli_error(const char *cmd, const bl_err *err);
int cli_errorf(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Progress on stderr: "label  42.0%  ETA 1m05s", throttled; finished with a newline. */
typedef struct {
    const char *label;
    double t0, last;
} cli_progress;
void cli_progress_start(cli_progress *p, const char *label);
void cli_progress_cb(void *ctx, double fraction);
void cli_progress_done(cli_progress *p);

/* Prints a JSON object to stdout (one line) and frees it. Every string in it is made valid UTF-8
 * first (file names and command lines need not be). */
void cli_print_json(cJSON *o);
/* The measurements of one fitted matrix as a JSON object (quantize's per-layer entries, fit):
 * bpw, mid, rel_err, wrel_err (null when not a number), iters, seconds, cpu_seconds and, for
 * iterative fits, converged_paths, the objective after every iteration ("objective") and the
 * seconds per phase. */
cJSON *cli_layer_fit_json(const bl_layer_fit_result *r);
/* Replaces every string value (and key) of the tree that is not valid UTF-8 by its valid form
 * (bl_utf8_valid). */
void cli_json_make_valid(cJSON *o);
/* Checks that everything written to stdout reached it (flush, error flag); prints the error and
 * returns 1 if not. The CLI's main calls it after every command. */
int cli_finish_stdout(const char *cmd);
/* A file written by a command (score dumps): lines go to "<path>.tmp.<pid>", and only a complete,
 * flushed and synced file is renamed to path, so a failed or killed run never leaves a partial
 * one. Check the path against the inputs first (bl_output_file_check). */
typedef struct {
    FILE *f;
    char *path, *tmp;
    bool failed; /* a write failed (set by writers; commit then fails) */
} cli_outfile;
int cli_outfile_open(const char *cmd, const char *path, cli_outfile *o);
/* 0, or 1 with the error printed (the temporary file removed). */
int cli_outfile_commit(const char *cmd, cli_outfile *o);
void cli_outfile_abort(cli_outfile *o); /* removes the temporary file; no-op after commit */

/* bl_outdir_prepare for the command cmd (its name goes into the marker file): NULL with the
 * error printed when OUT cannot be written or must not be (docs/errors.md). */
bl_outdir *cli_outdir_prepare(const char *cmd, const char *out, const char *const *inputs,
                              int n_inputs, bool force, bool live);

/* A comma-separated list of whole numbers in [lo, hi] ("1,2,4,8") into out (at most max);
 * returns the count, or -1 when the text is not such a list. */
int cli_parse_int_list(const char *s, int lo, int hi, int *out, int max);

/* Reads a whole text file; prints the error and returns NULL on failure. */
char *cli_read_text(const char *cmd, const char *path, size_t *len);
/* Tokenizes text with the model's tokenizer (error printed); returns NULL on failure. */
int32_t *cli_tokenize(const char *cmd, const bl_model *m, const char *text, size_t len,
                      bool bos, size_t *n);

/* The index of the name among names[0..n) that a mistyped word w[0..wn) most likely meant: the
 * nearest by edit distance within a third of its length (at least 2 edits), else the one name
 * that starts the word or that the word starts (3 letters at least); -1 when none or ambiguous. */
int cli_nearest(const char *w, size_t wn, const char *const *names, int n);

#endif
