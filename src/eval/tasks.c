/* Task table, list parsing and loading dispatch to the parsers of src/eval/task_*.c (docs/eval.md). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/task_internal.h"

static const char *const task_names[BL_TASK_COUNT] = {
    [BL_TASK_PIQA] = "piqa",           [BL_TASK_ARC_EASY] = "arc_easy",
    [BL_TASK_ARC_CHALLENGE] = "arc_challenge", [BL_TASK_HELLASWAG] = "hellaswag",
    [BL_TASK_WINOGRANDE] = "winogrande", [BL_TASK_BOOLQ] = "boolq",
    [BL_TASK_LAMBADA] = "lambada",     [BL_TASK_OPENBOOKQA] = "openbookqa",
};

const char *bl_task_name(bl_task_id t) {
    return (unsigned)t < BL_TASK_COUNT ? task_names[t] : "?";
}

bool bl_task_from_name(const char *name, bl_task_id *out) {
    for (int i = 0; i < BL_TASK_COUNT; i++)
        if (strcmp(name, task_names[i]) == 0) {
            *out = (bl_task_id)i;
            return true;
        }
    return false;
}

bool bl_task_has_acc_norm(bl_task_id t) {
    /* lm-eval's winogrande, boolq and lambada_openai configs list no acc_norm metric. */
    return t != BL_TASK_WINOGRANDE && t != BL_TASK_BOOLQ && t != BL_TASK_LAMBADA;
}

bl_status bl_task_parse_list(const char *list, bl_task_id *ids, int *n, bl_err *err) {
    *n = 0;
    bool seen[BL_TASK_COUNT] = {0};
    const char *p = list;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char name[32];
        if (len == 0 || len >= sizeof name)
            return bl_fail(err, BL_ERR_ARG, "bad task list '%s'", list);
        memcpy(name, p, len);
        name[len] = 0;
        bl_task_id t;
        if (strcmp(name, "all") == 0) {
            for (int i = 0; i < BL_TASK_COUNT; i++)
                if (!seen[i]) seen[i] = true, ids[(*n)++] = (bl_task_id)i;
        } else if (bl_task_from_name(name, &t)) {
            if (!seen[t]) seen[t] = true, ids[(*n)++] = t;
        } else {
            return bl_fail(err, BL_ERR_ARG,
                           "unknown task '%s' (piqa, arc_easy, arc_challenge, hellaswag, "
                           "winogrande, boolq, lambada, openbookqa, all)",
                           name);
        }
        p += len + (e ? 1 : 0);
    }
    if (*n == 0) return bl_fail(err, BL_ERR_ARG, "empty task list");
    return BL_OK;
}

static void free_items(bl_task_set *s) {
    for (int i = 0; i < s->n_items; i++) {
        for (int j = 0; j < s->items[i].n_req; j++) {
            free(s->items[i].req[j].context);
            free(s->items[i].req[j].continuation);
        }
        free(s->items[i].req);
    }
    free(s->items);
}

void bl_task_set_free(bl_task_set *s) {
    if (!s) return;
    free_items(s);
    free(s->path);
    free(s);
}

bl_status bl_task_parse(bl_task_id id, const char *path, const char *data, size_t len,
                        const char *labels, size_t labels_len, int limit, bl_task_set **out,
                        bl_err *err) {
    *out = NULL;
    if ((unsigned)id >= BL_TASK_COUNT) return bl_fail(err, BL_ERR_ARG, "unknown task %d", id);
    if (!data && len) return bl_fail(err, BL_ERR_ARG, "%s: NULL data", path);
    bl_task_set *s = calloc(1, sizeof *s);
    if (!s) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    s->id = id;
    bl_status st = (s->path = bl_strdup(path)) ? BL_OK
                                                : bl_fail(err, BL_ERR_NOMEM, "out of memory");
    if (!st) {
        switch (id) {
        case BL_TASK_PIQA: st = bl_parse_piqa(s, data, len, labels, labels_len, limit, err); break;
        case BL_TASK_HELLASWAG: st = bl_parse_hellaswag(s, data, len, limit, err); break;
        case BL_TASK_WINOGRANDE: st = bl_parse_winogrande(s, data, len, limit, err); break;
        case BL_TASK_LAMBADA: st = bl_parse_lambada(s, data, len, limit, err); break;
        default: st = bl_parse_foundry_mc(s, data, len, limit, err); break;
        }
    }
    if (!st && s->n_items == 0) st = bl_fail(err, BL_ERR_FORMAT, "%s: no items", s->path);
    for (int i = 0; !st && i < s->n_items; i++) {
        const bl_task_item *it = &s->items[i];
        if (it->gold < 0 || it->gold >= it->n_req)
            st = bl_fail(err, BL_ERR_FORMAT, "%s: item %d: gold %d out of range [0, %d)",
                         s->path, i, it->gold, it->n_req);
    }
    if (st) {
        bl_task_set_free(s);
        return st;
    }
    *out = s;
    return BL_OK;
}

static bool file_exists(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    fclose(f);
    return true;
}

/* The file each task reads under data_dir (docs/eval.md). */
static const char *const task_files[BL_TASK_COUNT] = {
    [BL_TASK_PIQA] = "llm-foundry-icl/piqa.jsonl",
    [BL_TASK_ARC_EASY] = "llm-foundry-icl/arc_easy.jsonl",
    [BL_TASK_ARC_CHALLENGE] = "llm-foundry-icl/arc_challenge.jsonl",
    [BL_TASK_HELLASWAG] = "hellaswag/hellaswag_val_full.txt",
    [BL_TASK_WINOGRANDE] = "llm-foundry-icl/winogrande.jsonl",
    [BL_TASK_BOOLQ] = "llm-foundry-icl/boolq.jsonl",
    [BL_TASK_LAMBADA] = "llm-foundry-icl/lambada_openai.jsonl",
    [BL_TASK_OPENBOOKQA] = "llm-foundry-icl/openbook_qa.jsonl",
};

bl_status bl_task_load(bl_task_id id, const char *data_dir, int limit, bl_task_set **out,
                       bl_err *err) {
    *out = NULL;
    if ((unsigned)id >= BL_TASK_COUNT) return bl_fail(err, BL_ERR_ARG, "unknown task %d", id);
    /* PIQA: the original validation set with its label file when present, else llm-foundry's */
    char *path = NULL, *lpath = NULL, *data = NULL, *labels = NULL;
    size_t len = 0, labels_len = 0;
    bl_status st = BL_OK;
    if (id == BL_TASK_PIQA) {
        path = bl_strfmt("%s/piqa/valid.jsonl", data_dir);
        lpath = bl_strfmt("%s/piqa/valid-labels.lst", data_dir);
        if (!path || !lpath) {
            st = bl_fail(err, BL_ERR_NOMEM, "out of memory");
        } else if (!file_exists(path) || !file_exists(lpath)) {
            char *alt = bl_strfmt("%s/%s", data_dir, task_files[id]);
            if (!alt)
                st = bl_fail(err, BL_ERR_NOMEM, "out of memory");
            else if (!file_exists(alt))
                st = bl_fail(err, BL_ERR_IO, "PIQA: neither %s (with valid-labels.lst) nor %s "
                             "found", path, alt);
            free(path);
            free(lpath);
            path = alt;
            lpath = NULL;
        }
    } else if (!(path = bl_strfmt("%s/%s", data_dir, task_files[id]))) {
        st = bl_fail(err, BL_ERR_NOMEM, "out of memory");
    }
    if (!st) st = bl_read_file(path, &data, &len, err);
    if (!st && lpath) st = bl_read_file(lpath, &labels, &labels_len, err);
    if (!st) st = bl_task_parse(id, path, data, len, labels, labels_len, limit, out, err);
    free(data);
    free(labels);
    free(path);
    free(lpath);
    return st;
}
