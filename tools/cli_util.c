#include "cli_util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void print_help(const cli_spec *s) {
    printf("usage: bitllm %s %s [options]\n\n%s\n\noptions:\n", s->name, s->args, s->summary);
    for (int i = 0; i < s->n_opts; i++) {
        const cli_opt *o = &s->opts[i];
        char left[64];
        if (o->short_name)
            snprintf(left, sizeof left, "-%c, --%s%s%s", o->short_name, o->name,
                     o->metavar ? " " : "", o->metavar ? o->metavar : "");
        else
            snprintf(left, sizeof left, "    --%s%s%s", o->name, o->metavar ? " " : "",
                     o->metavar ? o->metavar : "");
        printf("  %-28s %s\n", left, o->help);
    }
    printf("  %-28s %s\n", "-h, --help", "show this help");
}

static const cli_opt *find_opt(const cli_spec *s, const char *arg) {
    for (int i = 0; i < s->n_opts; i++) {
        const cli_opt *o = &s->opts[i];
        if (arg[0] == '-' && arg[1] == '-' && strcmp(arg + 2, o->name) == 0) return o;
        if (arg[0] == '-' && arg[1] == o->short_name && arg[1] && arg[2] == 0) return o;
    }
    return NULL;
}

static int parse_value(const cli_spec *s, const cli_opt *o, const char *v) {
    char *end = NULL;
    switch (o->kind) {
    case OPT_STR:
        *(const char **)o->dest = v;
        return CLI_OK;
    case OPT_INT: {
        long x = strtol(v, &end, 10);
        if (*v == 0 || *end || x < -2147483647L || x > 2147483647L) break;
        *(int *)o->dest = (int)x;
        return CLI_OK;
    }
    case OPT_U64: {
        unsigned long long x = strtoull(v, &end, 10);
        if (*v == 0 || *end || *v == '-') break;
        *(uint64_t *)o->dest = (uint64_t)x;
        return CLI_OK;
    }
    case OPT_FLOAT: {
        double x = strtod(v, &end);
        if (*v == 0 || *end || x != x) break;
        *(double *)o->dest = x;
        return CLI_OK;
    }
    case OPT_FLAG:
        break;
    }
    fprintf(stderr, "bitllm %s: invalid value '%s' for --%s\n", s->name, v, o->name);
    return CLI_USAGE;
}

int cli_parse(const cli_spec *s, int argc, char **argv, const char **pos, int *n_pos) {
    *n_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            print_help(s);
            return CLI_HELP;
        }
        if (a[0] == '-' && a[1] != 0 && !(a[1] >= '0' && a[1] <= '9')) {
            const cli_opt *o = find_opt(s, a);
            if (!o) {
                fprintf(stderr, "bitllm %s: unknown option '%s' (see --help)\n", s->name, a);
                return CLI_USAGE;
            }
            if (o->kind == OPT_FLAG) {
                *(bool *)o->dest = true;
                continue;
            }
            if (i + 1 >= argc) {
                fprintf(stderr, "bitllm %s: option --%s needs a value\n", s->name, o->name);
                return CLI_USAGE;
            }
            int r = parse_value(s, o, argv[++i]);
            if (r != CLI_OK) return r;
            continue;
        }
        if (*n_pos >= s->max_pos) {
            fprintf(stderr, "bitllm %s: unexpected argument '%s' (usage: bitllm %s %s)\n",
                    s->name, a, s->name, s->args);
            return CLI_USAGE;
        }
        pos[(*n_pos)++] = a;
    }
    if (*n_pos < s->min_pos) {
        fprintf(stderr, "bitllm %s: missing argument (usage: bitllm %s %s; see --help)\n",
                s->name, s->name, s->args);
        return CLI_USAGE;
    }
    return CLI_OK;
}

int cli_error(const char *cmd, const bl_err *err) {
    fprintf(stderr, "bitllm %s: %s\n", cmd, err->msg[0] ? err->msg : bl_status_name(err->code));
    return 1;
}

int cli_errorf(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bitllm %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

bl_model *cli_load_model(const char *path, const char *tokenizer) {
    bl_load_opts opts = {.tokenizer_path = tokenizer};
    return cli_load_model_opts(path, &opts);
}

bl_model *cli_load_model_opts(const char *path, const bl_load_opts *opts) {
    bl_err err = {0};
    bl_model *m = NULL;
    if (bl_model_load(path, opts, &m, &err) != BL_OK) {
        fprintf(stderr, "bitllm: cannot load model: %s\n", err.msg);
        return NULL;
    }
    return m;
}

void cli_progress_start(cli_progress *p, const char *label) {
    p->label = label;
    p->t0 = bl_time_s();
    p->last = p->t0;
}

/* On a terminal the line is redrawn in place twice a second; in a log (not a tty) a new line is
 * written every 30 seconds so long runs still show they are alive. */
void cli_progress_cb(void *ctx, double f) {
    cli_progress *p = ctx;
    const bool tty = isatty(2);
    double now = bl_time_s();
    if (now - p->last < (tty ? 0.5 : 30.0) || f >= 1.0) return;
    p->last = now;
    double el = now - p->t0, eta = f > 0 ? el * (1.0 - f) / f : 0;
    fprintf(stderr, "%s%s %5.1f%%  elapsed %.0fs  ETA %dm%02ds%s", tty ? "\r" : "", p->label,
            100.0 * f, el, (int)eta / 60, (int)eta % 60, tty ? " " : "\n");
    fflush(stderr);
}

void cli_progress_done(cli_progress *p) {
    fprintf(stderr, "%s%s 100.0%%  %.1fs%20s\n", isatty(2) ? "\r" : "", p->label,
            bl_time_s() - p->t0, "");
}

void cli_print_json(cJSON *o) {
    char *s = cJSON_PrintUnformatted(o);
    if (s) {
        puts(s);
        free(s);
    }
    cJSON_Delete(o);
}

char *cli_read_text(const char *cmd, const char *path, size_t *len) {
    bl_err err = {0};
    char *text;
    if (bl_read_file(path, &text, len, &err) != BL_OK) {
        cli_error(cmd, &err);
        return NULL;
    }
    return text;
}

int32_t *cli_tokenize(const char *cmd, const bl_model *m, const char *text, size_t len, bool bos,
                      size_t *n) {
    if (!m->tok) {
        cli_errorf(cmd, "%s has no tokenizer; pass --tokenizer FILE", m->path);
        return NULL;
    }
    bl_err err = {0};
    int32_t *ids = NULL;
    if (bl_tokenizer_encode(m->tok, text, len, bos, &ids, n, &err) != BL_OK) {
        cli_error(cmd, &err);
        return NULL;
    }
    return ids;
}
