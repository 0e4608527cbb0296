/* Shared plumbing of the subcommands: a declarative flag parser with generated --help, model
 * loading with error reporting, progress lines and JSON output. */
#ifndef BITLLM_CLI_UTIL_H
#define BITLLM_CLI_UTIL_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "bitllm/model.h"

typedef enum { OPT_FLAG, OPT_STR, OPT_INT, OPT_FLOAT, OPT_U64 } cli_opt_kind;

typedef struct {
    const char *name;     /* long name without dashes */
    char short_name;      /* 0 if none */
    cli_opt_kind kind;
    void *dest;           /* bool*, const char**, int*, double*, uint64_t* */
    const char *metavar;
    const char *help;
} cli_opt;

typedef struct {
    const char *name;     /* subcommand */
    const char *args;     /* positional arguments, e.g. "MODEL" */
    const char *summary;
    const cli_opt *opts;
    int n_opts;
    int min_pos, max_pos;
} cli_spec;

enum { CLI_OK = 0, CLI_HELP = 1, CLI_USAGE = 2 };
/* Parses argv (argv[0] is the subcommand name). Positional arguments land in pos[]. Returns
 * CLI_OK, CLI_HELP (help printed to stdout) or CLI_USAGE (message printed to stderr). */
int cli_parse(const cli_spec *spec, int argc, char **argv, const char **pos, int *n_pos);
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

/* Prints a JSON object to stdout (one line) and frees it. */
void cli_print_json(cJSON *o);
/* Reads a whole text file; prints the error and returns NULL on failure. */
char *cli_read_text(const char *cmd, const char *path, size_t *len);
/* Tokenizes text with the model's tokenizer (error printed); returns NULL on failure. */
int32_t *cli_tokenize(const char *cmd, const bl_model *m, const char *text, size_t len,
                      bool bos, size_t *n);

#endif
