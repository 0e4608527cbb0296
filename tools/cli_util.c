#include "cli_util.h"
#include "bitllm/dist.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
        if (o->tag) { /* a method option: the registry says which formats read it */
            char users[128];
            bl_qparam_users((bl_qparam)(o->tag - 1), false, users, sizeof users);
            printf("  %-28s %s [%s]\n", left, o->help, users);
        } else {
            printf("  %-28s %s\n", left, o->help);
        }
    }
    printf("  %-28s %s\n", "-h, --help", "show this help");
}

/* The option `arg` names: "--name", "--name=value" (then *value points past the '=') or "-c".
 * -1 when none. */
static int find_opt(const cli_spec *s, const char *arg, const char **value) {
    *value = NULL;
    const char *eq = arg[0] == '-' && arg[1] == '-' ? strchr(arg + 2, '=') : NULL;
    const size_t len = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
    for (int i = 0; i < s->n_opts; i++) {
        const cli_opt *o = &s->opts[i];
        if (arg[0] == '-' && arg[1] == '-' && strlen(o->name) == len &&
            strncmp(arg + 2, o->name, len) == 0) {
            if (eq) *value = eq + 1;
            return i;
        }
        if (arg[0] == '-' && arg[1] == o->short_name && arg[1] && arg[2] == 0) return i;
    }
    return -1;
}

/* Edit distance (insertions, deletions, substitutions, adjacent transpositions) between a and
 * b[0..bn), capped: anything above `cap` is reported as cap + 1. */
static size_t edit_distance(const char *a, size_t an, const char *b, size_t bn, size_t cap) {
    enum { MAXLEN = 64 };
    if (an > MAXLEN || bn > MAXLEN) return cap + 1;
    size_t d[MAXLEN + 1][MAXLEN + 1];
    for (size_t i = 0; i <= an; i++) d[i][0] = i;
    for (size_t j = 0; j <= bn; j++) d[0][j] = j;
    for (size_t i = 1; i <= an; i++)
        for (size_t j = 1; j <= bn; j++) {
            size_t v = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < v) v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    return d[an][bn] > cap ? cap + 1 : d[an][bn];
}

int cli_nearest(const char *w, size_t wn, const char *const *names, int n) {
    const size_t cap = wn / 3 > 2 ? wn / 3 : 2;
    int best = -1, prefix = -1, n_best = 0, n_prefix = 0;
    size_t best_d = cap + 1;
    for (int i = 0; i < n; i++) {
        const size_t nn = strlen(names[i]);
        const size_t dist = edit_distance(w, wn, names[i], nn, cap);
        if (dist < best_d) best = i, best_d = dist, n_best = 1;
        else if (dist == best_d && dist <= cap) n_best++;
        const size_t shorter = nn < wn ? nn : wn;
        if (shorter >= 3 && strncmp(w, names[i], shorter) == 0) prefix = i, n_prefix++;
    }
    if (best >= 0 && best_d <= cap && n_best == 1) return best;
    return n_prefix == 1 ? prefix : -1;
}

/* The option an unknown "--word" (or "--word=value") most likely meant, or NULL. */
static const cli_opt *suggest_opt(const cli_spec *s, const char *arg) {
    if (arg[0] != '-' || arg[1] != '-' || s->n_opts > 64) return NULL;
    const char *w = arg + 2, *eq = strchr(w, '=');
    const char *names[64];
    for (int i = 0; i < s->n_opts; i++) names[i] = s->opts[i].name;
    const int k = cli_nearest(w, eq ? (size_t)(eq - w) : strlen(w), names, s->n_opts);
    return k >= 0 ? &s->opts[k] : NULL;
}

const cli_opt *cli_find(const cli_spec *s, const char *name) {
    for (int i = 0; i < s->n_opts; i++)
        if (strcmp(s->opts[i].name, name) == 0) return &s->opts[i];
    return NULL;
}

bool cli_given(const cli_spec *s, const char *name) {
    const cli_opt *o = cli_find(s, name);
    return o && s->given && (*s->given >> (o - s->opts) & 1);
}

int cli_check_method_opts(const char *cmd, const cli_spec *spec, const bl_method *m,
                          bool random_factors, const char *method) {
    for (int i = 0; i < spec->n_opts; i++) { /* the formats' traits decide, not a chain of ifs */
        const cli_opt *op = &spec->opts[i];
        const bl_qparam qp = (bl_qparam)(op->tag - 1);
        if (!op->tag || !cli_given(spec, op->name) || bl_method_uses(m, random_factors, qp))
            continue;
        char users[96];
        bl_qparam_users(qp, random_factors, users, sizeof users);
        if (random_factors && bl_method_uses(m, false, qp))
            cli_errorf(cmd, "--%s has no effect with --random-factors (nothing is fitted)",
                       op->name);
        else
            cli_errorf(cmd, "--%s is not used by -m %s%s (used by: %s)", op->name, method,
                       random_factors ? " --random-factors" : "", users);
        return 2;
    }
    return 0;
}

int cli_method_flags(const char *cmd, const cli_spec *spec, const char *method, bl_method *m) {
    const bl_format_ops *f = m->format;
    bl_err err;
    for (int i = 0; i < spec->n_opts; i++) {
        const cli_opt *op = &spec->opts[i];
        if (!op->tag || op->kind != OPT_INT || !cli_given(spec, op->name)) continue;
        for (int k = 0; k < f->n_params; k++) {
            const bl_format_param *d = &f->params[k];
            if (d->flag != op->tag - 1) continue;
            if (bl_format_param_get(d, &m->params) != d->def && strchr(method, ':')) {
                cli_errorf(cmd, "--%s and -m %s both set %s; give one", op->name, method, d->key);
                return 2;
            }
            if (bl_method_set_flag(m, (bl_qparam)d->flag, *(const int *)op->dest, &err)) {
                cli_error(cmd, &err);
                return 2;
            }
        }
    }
    return 0;
}

int cli_method(const char *cmd, const cli_spec *spec, const char *method, bool random_factors,
               bl_method *m) {
    bl_err err;
    if (bl_method_parse(method, m, &err) != BL_OK) {
        cli_error(cmd, &err);
        return 2;
    }
    if (cli_check_method_opts(cmd, spec, m, random_factors, method)) return 2;
    return cli_method_flags(cmd, spec, method, m);
}

void cli_method_params_json(const bl_method *m, cJSON *j) {
    const bl_format_ops *f = m->format;
    for (int i = 0; i < f->n_params; i++)
        if (f->params[i].flag >= 0 && bl_method_uses(m, false, (bl_qparam)f->params[i].flag))
            cJSON_AddNumberToObject(j, bl_qparam_name((bl_qparam)f->params[i].flag),
                                    (double)bl_format_param_get(&f->params[i], &m->params));
}

/* "-n" or "--name" as the user may have typed it. */
static void opt_label(const cli_opt *o, char *buf, size_t cap) {
    snprintf(buf, cap, "%s%s", o->name[1] ? "--" : "-", o->name);
}

/* The allowed range in words, e.g. ">= 1", "in (0, 1]". */
static void range_text(const cli_opt *o, char *buf, size_t cap) {
    const int b = o->bounds;
    if ((b & CLI_LO) && (b & CLI_HI))
        snprintf(buf, cap, "in %c%g, %g%c", b & CLI_LO_OPEN ? '(' : '[', o->lo, o->hi,
                 b & CLI_HI_OPEN ? ')' : ']');
    else if (b & CLI_LO)
        snprintf(buf, cap, "%s %g", b & CLI_LO_OPEN ? ">" : ">=", o->lo);
    else if (b & CLI_HI)
        snprintf(buf, cap, "%s %g", b & CLI_HI_OPEN ? "<" : "<=", o->hi);
    else
        snprintf(buf, cap, "a finite number");
}

static bool in_range(const cli_opt *o, double x) {
    const int b = o->bounds;
    if (isinf(x) && !(b & CLI_INF)) return false;
    if ((b & CLI_LO) && (b & CLI_LO_OPEN ? !(x > o->lo) : !(x >= o->lo))) return false;
    if ((b & CLI_HI) && (b & CLI_HI_OPEN ? !(x < o->hi) : !(x <= o->hi))) return false;
    return true;
}

static int parse_value(const cli_spec *s, const cli_opt *o, const char *v) {
    char *end = NULL, label[80], range[80];
    opt_label(o, label, sizeof label);
    const bool blank = *v == 0 || isspace((unsigned char)*v);
    double x = 0;
    errno = 0;
    switch (o->kind) {
    case OPT_STR:
        *(const char **)o->dest = v;
        return CLI_OK;
    case OPT_INT: {
        long y = blank ? 0 : strtol(v, &end, 10);
        if (!blank && !*end && !errno && (y < INT_MIN || y > INT_MAX)) errno = ERANGE;
        if (blank || *end || errno) break;
        x = (double)y;
        if (!in_range(o, x)) goto out_of_range;
        *(int *)o->dest = (int)y;
        return CLI_OK;
    }
    case OPT_U64: {
        unsigned long long y = blank || *v == '-' ? 0 : strtoull(v, &end, 10);
        if (blank || *v == '-' || *end || errno) break;
        x = (double)y;
        if (o->bounds && !in_range(o, x)) goto out_of_range;
        *(uint64_t *)o->dest = (uint64_t)y;
        return CLI_OK;
    }
    case OPT_FLOAT: {
        x = blank ? 0 : strtod(v, &end);
        if (blank || *end || isnan(x) || (errno == ERANGE && isinf(x))) break;
        if (!in_range(o, x)) goto out_of_range;
        *(double *)o->dest = x;
        return CLI_OK;
    }
    case OPT_FLAG:
        break;
    }
    if (!blank && end && !*end && errno == ERANGE && o->kind != OPT_FLOAT) { /* beyond the type */
        const int b = o->bounds;
        if ((b & CLI_LO) && (b & CLI_HI)) range_text(o, range, sizeof range);
        else if (o->kind == OPT_U64) snprintf(range, sizeof range, "<= %llu", ULLONG_MAX);
        else if (b & CLI_LO) snprintf(range, sizeof range, "in [%g, %d]", o->lo, INT_MAX);
        else snprintf(range, sizeof range, "in [%d, %d]", INT_MIN, INT_MAX);
        fprintf(stderr, "bitllm %s: invalid value '%s' for %s (a whole number %s)\n", s->name, v,
                label, range);
        return CLI_USAGE;
    }
    fprintf(stderr, "bitllm %s: invalid value '%s' for %s (%s)\n", s->name, v, label,
            o->kind == OPT_FLOAT ? "a number" : o->kind == OPT_U64 ? "a whole number >= 0"
                                                                   : "a whole number");
    return CLI_USAGE;
out_of_range:
    range_text(o, range, sizeof range);
    fprintf(stderr, "bitllm %s: %s must be %s%s, got %s\n", s->name, label, range,
            isinf(x) && !(o->bounds & CLI_INF) ? " and finite" : "", v);
    return CLI_USAGE;
}

int cli_parse(const cli_spec *s, int argc, char **argv, const char **pos, int *n_pos) {
    *n_pos = 0;
    uint64_t local = 0, *given = s->given ? s->given : &local;
    *given = 0;
    if (s->n_opts > 64) {
        fprintf(stderr, "bitllm %s: too many options for the parser\n", s->name);
        return CLI_USAGE;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            print_help(s);
            return CLI_HELP;
        }
        if (a[0] == '-' && a[1] != 0 && !(a[1] >= '0' && a[1] <= '9')) {
            const char *inline_value;
            const int k = find_opt(s, a, &inline_value);
            if (k < 0) {
                const cli_opt *near = suggest_opt(s, a);
                if (near)
                    fprintf(stderr, "bitllm %s: unknown option '%s' (did you mean --%s? see "
                            "--help)\n", s->name, a, near->name);
                else fprintf(stderr, "bitllm %s: unknown option '%s' (see --help)\n", s->name, a);
                return CLI_USAGE;
            }
            const cli_opt *o = &s->opts[k];
            if (*given >> k & 1) {
                char label[80];
                opt_label(o, label, sizeof label);
                fprintf(stderr, "bitllm %s: %s given twice\n", s->name, label);
                return CLI_USAGE;
            }
            *given |= (uint64_t)1 << k;
            if (o->kind == OPT_FLAG) {
                if (inline_value) {
                    fprintf(stderr, "bitllm %s: --%s takes no value (got '%s')\n", s->name,
                            o->name, a);
                    return CLI_USAGE;
                }
                *(bool *)o->dest = true;
                continue;
            }
            if (!inline_value && i + 1 >= argc) {
                fprintf(stderr, "bitllm %s: option --%s needs a value\n", s->name, o->name);
                return CLI_USAGE;
            }
            int r = parse_value(s, o, inline_value ? inline_value : argv[++i]);
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
    for (int k = 0; k < s->n_opts; k++) {
        const cli_opt *o = &s->opts[k];
        const cli_opt *need = o->needs ? cli_find(s, o->needs) : NULL;
        if ((*given >> k & 1) && need && !(*given >> (need - s->opts) & 1)) {
            fprintf(stderr, "bitllm %s: --%s has no effect without --%s\n", s->name, o->name,
                    need->name);
            return CLI_USAGE;
        }
    }
    return CLI_OK;
}

bl_outdir *cli_outdir_prepare(const char *cmd, const char *out, const char *const *inputs,
                              int n_inputs, bool force, bool live) {
    bl_outdir_opts oo = {.force = force, .inputs = inputs, .n_inputs = n_inputs, .command = cmd,
                         .live = live};
    bl_outdir *od = NULL;
    bl_err err = {0};
    if (bl_outdir_prepare(out, &oo, &od, &err) != BL_OK) {
        cli_error(cmd, &err);
        return NULL;
    }
    return od;
}

int cli_check_penalties(const cli_spec *spec, const cli_penalties *p) {
    const bl_penalties v = cli_penalties_value(p);
    if (!cli_given(spec, "repeat-last-n") || v.last_n == 0 || bl_penalties_active(&v))
        return CLI_OK;
    cli_errorf(spec->name, "--repeat-last-n has no effect without --repeat-penalty, "
                           "--presence-penalty or --frequency-penalty");
    return CLI_USAGE;
}

int cli_check_sampling(const cli_spec *spec, double temp) {
    static const char *const sampling[] = {"top-p", "top-k", "min-p", "seed"};
    if (temp != 0) return CLI_OK;
    for (size_t i = 0; i < sizeof sampling / sizeof *sampling; i++)
        if (cli_given(spec, sampling[i])) {
            cli_errorf(spec->name, "--%s has no effect with --temp 0 (greedy decoding)",
                       sampling[i]);
            return CLI_USAGE;
        }
    return CLI_OK;
}

/* "bitllm CMD: MESSAGE" or, in a job of several ranks, "bitllm CMD (rank R of N): MESSAGE", as
 * one write so that the lines of ranks failing together do not interleave. */
static void error_line(const char *cmd, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
static void error_line(const char *cmd, const char *fmt, va_list ap) {
    char msg[2048], line[2200];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (bl_dist_size() > 1)
        snprintf(line, sizeof line, "bitllm %s (rank %d of %d): %s\n", cmd, bl_dist_rank(),
                 bl_dist_size(), msg);
    else
        snprintf(line, sizeof line, "bitllm %s: %s\n", cmd, msg);
    fputs(line, stderr);
}

int cli_errorf(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    error_line(cmd, fmt, ap);
    va_end(ap);
    return 1;
}

int cli_error(const char *cmd, const bl_err *err) {
    if (!err->msg[0]) return cli_errorf(cmd, "%s", bl_status_name(err->code));
    /* a failed allocation's message names what was being allocated; say what happened too */
    if (err->code == BL_ERR_NOMEM && !strstr(err->msg, "memory") && !strstr(err->msg, "allocat"))
        return cli_errorf(cmd, "out of memory: %s", err->msg);
    return cli_errorf(cmd, "%s", err->msg);
}

bl_model *cli_load_model_tables(const char *cmd, const char *path, bl_load_opts *opts,
                                const char *tables, const char *kv, int *rc) {
    *rc = cli_exit_code(CLI_USAGE);
    if (tables && !bl_sign_tables_from_name(tables, &opts->sign_tables)) {
        cli_errorf(cmd, "unknown --sign-tables '%s' (f32, i8)", tables);
        return NULL;
    }
    if (kv && !bl_kv_cache_from_name(kv, &opts->kv_cache)) {
        cli_errorf(cmd, "unknown --kv-cache '%s' (f32, f16, q8)", kv);
        return NULL;
    }
    bl_model *m = cli_load_model_opts(path, opts);
    if (!m) {
        *rc = 1;
        return NULL;
    }
    if (m->sign_tables == BL_TABLES_I8 && bl_model_i8_count(m) == 0) {
        cli_errorf(cmd, "--sign-tables i8 has no effect: %s has no 1-bit layers and no q8_0/q4_0 "
                   "matrices", path);
        bl_model_free(m);
        return NULL;
    }
    if (m->sign_tables == BL_TABLES_I8) {
        /* where the int8 products have no SIMD kernel (below AVX2) their specification runs */
        const bool signs = bl_model_sign_count(m) > 0; /* else only q8_0/q4_0 matrices */
        if (!(signs ? bl_sign_i8_native(m->isa) : bl_qmat_i8_native(m->isa)))
            fprintf(stderr, "bitllm %s: warning: %s need AVX2; --sign-tables i8 runs %s with the "
                    "scalar reference, far slower\n", cmd,
                    signs ? "the int8 sign tables" : "int8 inputs for q8_0/q4_0 matrices",
                    signs ? "the 1-bit products" : "those products");
    }
    return m;
}

bl_model *cli_load_model(const char *path, const char *tokenizer) {
    bl_load_opts opts = {.tokenizer_path = tokenizer};
    return cli_load_model_opts(path, &opts);
}

bl_model *cli_load_model_opts(const char *path, const bl_load_opts *opts) {
    bl_err err = {0};
    bl_model *m = NULL;
    if (bl_model_load(path, opts, &m, &err) != BL_OK) {
        if (bl_dist_size() > 1)
            fprintf(stderr, "bitllm (rank %d of %d): cannot load model: %s\n", bl_dist_rank(),
                    bl_dist_size(), err.msg);
        else
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

void cli_json_make_valid(cJSON *o) {
    for (cJSON *c = o; c; c = c->next) {
        if (c->string && !(c->type & cJSON_StringIsConst)) {
            char *v = bl_utf8_valid(c->string, strlen(c->string), NULL);
            char *k = v && strcmp(v, c->string) != 0 ? cJSON_malloc(strlen(v) + 1) : NULL;
            if (k) {
                memcpy(k, v, strlen(v) + 1);
                cJSON_free(c->string);
                c->string = k;
            }
            free(v);
        }
        if (cJSON_IsString(c) && c->valuestring) {
            char *v = bl_utf8_valid(c->valuestring, strlen(c->valuestring), NULL);
            if (v && strcmp(v, c->valuestring) != 0) cJSON_SetValuestring(c, v);
            free(v);
        }
        if (c->child) cli_json_make_valid(c->child);
    }
}

static bool g_output_failed; /* a result could not be formed: the command must not exit 0 */

void cli_print_json(cJSON *o) {
    cli_json_make_valid(o);
    char *s = cJSON_PrintUnformatted(o);
    if (s) {
        puts(s);
        free(s);
    } else {
        g_output_failed = true;
    }
    cJSON_Delete(o);
}

static void add_num_or_null(cJSON *o, const char *key, double v) {
    if (isfinite(v)) cJSON_AddNumberToObject(o, key, v);
    else cJSON_AddNullToObject(o, key); /* NaN/Inf are not JSON */
}

cJSON *cli_layer_fit_json(const bl_layer_fit_result *r) {
    cJSON *e = cJSON_CreateObject();
    cJSON_AddNumberToObject(e, "bpw", r->bpw);
    if (r->mid > 0) cJSON_AddNumberToObject(e, "mid", (double)r->mid);
    add_num_or_null(e, "rel_err", r->rel_err);
    add_num_or_null(e, "wrel_err", r->wrel_err);
    cJSON_AddNumberToObject(e, "iters", r->iters);
    cJSON_AddNumberToObject(e, "seconds", r->seconds);
    cJSON_AddNumberToObject(e, "cpu_seconds", r->cpu_seconds);
    if (r->iters > 0) {
        const bl_fit_trace *t = &r->trace;
        cJSON_AddNumberToObject(e, "converged_paths", t->paths_converged);
        cJSON *obj = cJSON_AddArrayToObject(e, "objective");
        for (int i = 0; i < t->n_obj; i++) cJSON_AddItemToArray(obj, cJSON_CreateNumber(t->obj[i]));
        cJSON *ph = cJSON_AddObjectToObject(e, "phase_seconds");
        for (int p = 0; p < BL_FIT_PHASES; p++)
            cJSON_AddNumberToObject(ph, bl_fit_phase_name((bl_fit_phase)p), t->seconds[p]);
        cJSON_AddNumberToObject(e, "gflop", t->flops / 1e9);
    }
    return e;
}

int cli_finish_stdout(const char *cmd) {
    /* stdout is fully buffered when redirected: a full disk or a closed pipe shows up here */
    errno = 0;
    if (g_output_failed) {
        fprintf(stderr, "bitllm %s: out of memory printing the JSON result\n", cmd);
        return 1;
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "bitllm %s: error writing the output: %s\n", cmd,
                errno ? strerror(errno) : "write failed");
        return 1;
    }
    return 0;
}

int cli_parse_int_list(const char *s, int lo, int hi, int *out, int max) {
    int k = 0;
    if (!*s) return -1;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < lo || v > hi || k == max) return -1;
        out[k++] = (int)v;
        s = end;
        if (*s == ',' && s[1]) s++;
        else if (*s) return -1;
    }
    return k;
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

int cli_outfile_open(const char *cmd, const char *path, cli_outfile *o) {
    memset(o, 0, sizeof *o);
    size_t n = strlen(path) + 32;
    o->path = bl_strdup(path);
    o->tmp = malloc(n);
    if (!o->path || !o->tmp) {
        cli_outfile_abort(o);
        return cli_errorf(cmd, "out of memory");
    }
    snprintf(o->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) { /* a device or pipe: in place */
        free(o->tmp);
        o->tmp = NULL;
        if (!(o->f = fopen(path, "w"))) {
            int rc = cli_errorf(cmd, "cannot write %s: %s", path, strerror(errno));
            cli_outfile_abort(o);
            return rc;
        }
        return 0;
    }
    if (!(o->f = fopen(o->tmp, "w"))) {
        int rc = cli_errorf(cmd, "cannot write %s: %s", o->tmp, strerror(errno));
        cli_outfile_abort(o);
        return rc;
    }
    return 0;
}

int cli_outfile_commit(const char *cmd, cli_outfile *o) {
    errno = 0;
    bool ok = !o->failed && fflush(o->f) == 0 && !ferror(o->f) &&
              (!o->tmp || fsync(fileno(o->f)) == 0); /* a device is not synced */
    ok = fclose(o->f) == 0 && ok;
    o->f = NULL;
    if (!ok || (o->tmp && rename(o->tmp, o->path) != 0)) {
        int rc = cli_errorf(cmd, "cannot write %s: %s", o->path,
                            errno ? strerror(errno) : "write failed");
        cli_outfile_abort(o);
        return rc;
    }
    free(o->path);
    free(o->tmp);
    memset(o, 0, sizeof *o);
    return 0;
}

void cli_outfile_abort(cli_outfile *o) {
    if (o->f) fclose(o->f);
    if (o->tmp) unlink(o->tmp);
    free(o->path);
    free(o->tmp);
    memset(o, 0, sizeof *o);
}
