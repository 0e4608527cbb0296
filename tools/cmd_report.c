/* bitllm report: DIR/results.jsonl (written by bitllm compare) -> DIR/report.md, a Markdown table
 * of method, bpw, perplexity and zero-shot accuracy, and DIR/ppl_vs_bpw.png, perplexity against
 * bits per weight per method, drawn by gnuplot (pngcairo, else png, else svg). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_util.h"
#include "cmd_eval.h"

#define MAX_ROWS 256

/* fp first, then the registry's order of formats, then the format's first parameter (rtn1 <
 * rtn2); names that parse as no method last. */
static int method_rank(const char *m) {
    if (strcmp(m, "fp") == 0) return 0;
    bl_method q;
    if (bl_method_parse(m, &q, NULL) != BL_OK) return 1 << 30;
    int n, i = 0;
    const bl_format_ops *const *all = bl_format_list(&n);
    while (i < n && all[i] != q.format) i++;
    int64_t first = q.format->n_params ? bl_format_param_get(&q.format->params[0], &q.params) : 0;
    return 1 + i * 4096 + (int)(first < 0 ? 0 : first > 4095 ? 4095 : first);
}

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static double jnum(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static int row_cmp(const void *a, const void *b) {
    const cJSON *x = *(cJSON *const *)a, *y = *(cJSON *const *)b;
    int d = method_rank(jstr(x, "method")) - method_rank(jstr(y, "method"));
    if (d) return d;
    d = strcmp(jstr(x, "method"), jstr(y, "method"));
    if (d) return d;
    double bx = jnum(x, "bpw_layers"), by = jnum(y, "bpw_layers");
    return bx < by ? -1 : bx > by;
}

/* Reads the runs, keeping the latest line of each label; rows[] are owned by *root. */
static int read_rows(const char *cmd, const char *path, cJSON **root, cJSON **rows, int *n) {
    size_t len;
    char *data = cli_read_text(cmd, path, &len);
    if (!data) return 1;
    *root = cJSON_CreateArray();
    *n = 0;
    int line = 0, rc = 0;
    for (char *p = data; *p && !rc;) {
        char *e = strchr(p, '\n');
        size_t m = e ? (size_t)(e - p) : strlen(p);
        line++;
        if (m > 0) {
            cJSON *o = cJSON_ParseWithLength(p, m);
            if (!o || !cJSON_IsObject(o) || !*jstr(o, "label")) {
                cJSON_Delete(o);
                rc = cli_errorf(cmd, "%s:%d: not a result line", path, line);
                break;
            }
            cJSON_AddItemToArray(*root, o);
            int k = 0;
            while (k < *n && strcmp(jstr(rows[k], "label"), jstr(o, "label")) != 0) k++;
            if (k == *n) {
                if (*n == MAX_ROWS) {
                    rc = cli_errorf(cmd, "%s: more than %d runs", path, MAX_ROWS);
                    break;
                }
                (*n)++;
            }
            rows[k] = o;
        }
        p = e ? e + 1 : p + m;
    }
    free(data);
    if (!rc && *n == 0) rc = cli_errorf(cmd, "%s: no runs", path);
    if (!rc) qsort(rows, (size_t)*n, sizeof *rows, row_cmp);
    return rc;
}

static const char *bpw_target(const cJSON *row, char *buf, size_t cap) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItem(row, "params"),
                                                      "bpw_target");
    double v; /* a number, or the exact hex-float string the provenance stores */
    if (cJSON_IsString(t) && !bl_json_exact_value(t, &v)) return t->valuestring;
    if (bl_json_exact_value(t, &v)) return snprintf(buf, cap, "%g", v), buf;
    return "-";
}

/* Appends formatted text to a growing buffer. */
typedef struct {
    char *s;
    size_t n, cap;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if (b->n + (size_t)k + 1 > b->cap) {
        size_t nc = (b->cap + (size_t)k + 1) * 2;
        char *p = realloc(b->s, nc);
        if (!p) return;
        b->s = p, b->cap = nc;
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->n, b->cap - b->n, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}

static void table(sbuf *b, cJSON **rows, int n, const bool *has_task) {
    double fp_avg = NAN;
    for (int i = 0; i < n; i++)
        if (strcmp(jstr(rows[i], "method"), "fp") == 0) fp_avg = jnum(rows[i], "average");
    sb_printf(b, "| method | bpw target | bpw (layers) | bpw (model) | ppl |");
    for (int t = 0; t < BL_TASK_COUNT; t++)
        if (has_task[t]) sb_printf(b, " %s |", bl_task_name((bl_task_id)t));
    sb_printf(b, " average | %% of FP |\n|---|---|---:|---:|---:|");
    for (int t = 0; t < BL_TASK_COUNT; t++)
        if (has_task[t]) sb_printf(b, "---:|");
    sb_printf(b, "---:|---:|\n");
    for (int i = 0; i < n; i++) {
        char buf[32];
        const cJSON *r = rows[i], *tasks = cJSON_GetObjectItem(r, "tasks");
        sb_printf(b, "| %s | %s | %.3f | %.3f | %.2f |", jstr(r, "method"),
                  bpw_target(r, buf, sizeof buf), jnum(r, "bpw_layers"), jnum(r, "bpw_model"),
                  jnum(r, "ppl"));
        for (int t = 0; t < BL_TASK_COUNT; t++) {
            if (!has_task[t]) continue;
            double a = jnum(cJSON_GetObjectItem(tasks, bl_task_name((bl_task_id)t)), "acc");
            if (isnan(a)) sb_printf(b, " - |");
            else sb_printf(b, " %.1f |", 100 * a);
        }
        double avg = jnum(r, "average");
        if (isnan(fp_avg) || fp_avg <= 0) sb_printf(b, " %.1f | - |\n", 100 * avg);
        else sb_printf(b, " %.1f | %.1f |\n", 100 * avg, 100 * avg / fp_avg);
    }
}

/* The first terminal of pngcairo, png, svg that this gnuplot has; NULL without gnuplot. */
static const char *plot_terminal(void) {
    FILE *p = popen("gnuplot -e 'print GPVAL_TERMINALS' 2>&1", "r");
    if (!p) return NULL;
    char buf[8192];
    size_t k = fread(buf, 1, sizeof buf - 1, p);
    buf[k] = 0;
    int st = pclose(p);
    if (st != 0) return NULL;
    if (strstr(buf, "pngcairo")) return "pngcairo";
    if (strstr(buf, " png ") || strstr(buf, " png\n")) return "png";
    if (strstr(buf, "svg")) return "svg";
    return NULL;
}

/* Writes DIR/ppl_vs_bpw.{dat,gp} and runs gnuplot; *image receives the file name (in DIR). */
static int plot(const char *cmd, const char *dir, cJSON **rows, int n, const char *title,
                const char **image) {
    *image = NULL;
    const char *term = plot_terminal();
    if (!term) {
        fprintf(stderr, "bitllm %s: gnuplot not found; no plot\n", cmd);
        return 0;
    }
    if (strchr(dir, '\'') || strchr(dir, '"')) {
        fprintf(stderr, "bitllm %s: quotes in the folder name; no plot\n", cmd);
        return 0;
    }
    const bool svg = strcmp(term, "svg") == 0;
    *image = svg ? "ppl_vs_bpw.svg" : "ppl_vs_bpw.png";
    sbuf dat = {0}, gp = {0};
    double fp_ppl = NAN;
    int blocks = 0;
    char names[16][16];
    for (int i = 0; i < n;) {
        const char *m = jstr(rows[i], "method");
        int j = i;
        if (strcmp(m, "fp") == 0) {
            fp_ppl = jnum(rows[i], "ppl");
            i++;
            continue;
        }
        if (blocks) sb_printf(&dat, "\n\n");
        sb_printf(&dat, "# %s: bpw_layers ppl\n", m);
        for (; j < n && strcmp(jstr(rows[j], "method"), m) == 0; j++)
            sb_printf(&dat, "%.6f %.6f\n", jnum(rows[j], "bpw_layers"), jnum(rows[j], "ppl"));
        if (blocks < 16) snprintf(names[blocks], sizeof names[0], "%s", m);
        blocks++;
        i = j;
    }
    sb_printf(&gp, "set terminal %s size 800,520%s\nset output '%s/%s'\n", term,
              svg ? "" : " font ',10'", dir, *image);
    sb_printf(&gp, "set title \"%s\" noenhanced\nset xlabel 'bits per weight of the quantized "
                   "layers'\nset ylabel 'WikiText-2 perplexity'\nset logscale y\nset grid\n"
                   "set key top right noenhanced\nset offsets 0.1, 0.1, 0, 0\n",
              title);
    sb_printf(&gp, "plot ");
    for (int b = 0; b < blocks && b < 16; b++)
        sb_printf(&gp, "%s'%s/ppl_vs_bpw.dat' index %d using 1:2 with linespoints pt %d ps 1.5 "
                       "lw 2 title '%s'",
                  b ? ", \\\n     " : "", dir, b, 5 + 2 * b, names[b]);
    if (!isnan(fp_ppl))
        sb_printf(&gp, "%s%.6f with lines dt 2 lw 2 lc rgb 'black' title 'FP (%.2f)'",
                  blocks ? ", \\\n     " : "", fp_ppl, fp_ppl);
    sb_printf(&gp, "\n");
    char p1[4096], p2[4096], cmdline[8400];
    snprintf(p1, sizeof p1, "%s/ppl_vs_bpw.dat", dir);
    snprintf(p2, sizeof p2, "%s/ppl_vs_bpw.gp", dir);
    bl_err err = {0};
    int rc = 0;
    if (blocks == 0 && isnan(fp_ppl)) {
        *image = NULL;
    } else if (bl_write_file_atomic(p1, dat.s ? dat.s : "", dat.n, &err) ||
               bl_write_file_atomic(p2, gp.s, gp.n, &err)) {
        rc = cli_error(cmd, &err);
    } else {
        snprintf(cmdline, sizeof cmdline, "gnuplot '%s'", p2);
        if (system(cmdline) != 0) {
            fprintf(stderr, "bitllm %s: gnuplot failed on %s; no plot\n", cmd, p2);
            *image = NULL;
        }
    }
    free(dat.s);
    free(gp.s);
    return rc;
}

int report_render(const char *cmd, const char *dir, bool print_table) {
    char path[4096];
    snprintf(path, sizeof path, "%s/results.jsonl", dir);
    cJSON *root = NULL, *rows[MAX_ROWS];
    int n = 0;
    if (read_rows(cmd, path, &root, rows, &n)) {
        cJSON_Delete(root);
        return 1;
    }
    bool has_task[BL_TASK_COUNT] = {0};
    for (int i = 0; i < n; i++)
        for (int t = 0; t < BL_TASK_COUNT; t++)
            if (cJSON_GetObjectItem(cJSON_GetObjectItem(rows[i], "tasks"),
                                    bl_task_name((bl_task_id)t)))
                has_task[t] = true;
    const cJSON *r0 = rows[0], *ev = cJSON_GetObjectItem(r0, "eval");
    char title[512];
    snprintf(title, sizeof title, "%s: perplexity vs bits per weight", jstr(r0, "model"));
    const char *image;
    int rc = plot(cmd, dir, rows, n, title, &image);
    sbuf md = {0}, tab = {0};
    table(&tab, rows, n, has_task);
    sb_printf(&md, "# Comparison: %s\n\n", jstr(r0, "model"));
    sb_printf(&md, "%s\n", tab.s ? tab.s : "");
    double lim = jnum(ev, "limit");
    char items[64] = "all";
    if (lim > 0) snprintf(items, sizeof items, "the first %.0f", lim);
    sb_printf(&md,
              "ppl: %s, window %.0f tokens, %.0f tokens scored. Tasks: accuracy in %% "
              "(lm-evaluation-harness semantics, docs/eval.md), %s items per task, window "
              "%.0f, BOS %s. average = mean accuracy over the tasks; %% of FP = average / FP "
              "average. bpw counts every stored bit (FP16 scales included); \"bpw target\" "
              "onebit = the bpw-sized formats at onebit's cost per layer. bitllm %s, seed %.0f.\n",
              jstr(r0, "text"), jnum(r0, "ctx"), jnum(r0, "tokens"),
              items,
              jnum(ev, "ctx"), cJSON_IsTrue(cJSON_GetObjectItem(ev, "bos")) ? "yes" : "no",
              jstr(r0, "version"), jnum(r0, "seed"));
    if (image) sb_printf(&md, "\n![perplexity vs bpw](%s)\n", image);
    /* The command, when one compare call produced every row (not for merged runs). */
    bool same = true;
    for (int i = 1; i < n; i++)
        same = same && strcmp(jstr(rows[i], "command"), jstr(r0, "command")) == 0;
    if (same && *jstr(r0, "command")) sb_printf(&md, "\nCommand: `%s`\n", jstr(r0, "command"));
    snprintf(path, sizeof path, "%s/report.md", dir);
    bl_err err = {0};
    if (!rc && bl_write_file_atomic(path, md.s, md.n, &err)) rc = cli_error(cmd, &err);
    if (!rc) {
        if (image) fprintf(stderr, "wrote %s and %s/%s\n", path, dir, image);
        else fprintf(stderr, "wrote %s\n", path);
        if (print_table) fputs(tab.s ? tab.s : "", stdout);
    }
    free(md.s);
    free(tab.s);
    cJSON_Delete(root);
    return rc;
}

int cmd_report(int argc, char **argv) {
    bool quiet = false;
    const cli_opt opts[] = {{"quiet", 'q', OPT_FLAG, &quiet, NULL, "do not print the table", CLI_ANY}};
    const cli_spec spec = {"report", "DIR",
                           "Render DIR/report.md (method, bpw, perplexity, zero-shot accuracy, "
                           "% of FP) and DIR/ppl_vs_bpw.png from DIR/results.jsonl written by "
                           "bitllm compare; the latest line of each run label is used.",
                           opts, 1, 1, 1, NULL};
    const char *pos[1];
    int np, r = cli_parse(&spec, argc, argv, pos, &np);
    if (r != CLI_OK) return cli_exit_code(r);
    return report_render("report", pos[0], !quiet);
}
