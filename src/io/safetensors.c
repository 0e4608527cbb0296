/* safetensors reader: u64 little-endian header length N, N bytes of JSON, then the data region.
 * Each JSON entry is {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]} with offsets
 * relative to the data region; an optional "__metadata__" object maps strings to strings.
 * Tensors are views into the memory-mapped file, which the tensor set takes over. */
#include "bitllm/io.h"

#include <cjson/cJSON.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define ST_MAX_HEADER ((uint64_t)100 << 20) /* real headers are KBs; bigger is an attack */
#define JSON_MAX_INT 9007199254740992.0    /* 2^53: beyond it doubles are not exact integers */

/* A JSON number that is a non-negative integer a double represents exactly. */
static bool json_uint(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return false;
    double d = j->valuedouble;
    if (!isfinite(d) || d < 0 || d > JSON_MAX_INT || d != floor(d)) return false;
    *out = (uint64_t)d;
    return true;
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp((*(const bl_tensor *const *)a)->name, (*(const bl_tensor *const *)b)->name);
}

/* The set's tensors sorted by name (for lookups of many names in O(n log n)). */
static const bl_tensor **sorted_tensors(const bl_tensor_set *s) {
    const bl_tensor **v = bl_malloc_array((size_t)s->n, sizeof *v);
    if (!v) return NULL;
    for (int i = 0; i < s->n; i++) v[i] = &s->t[i];
    qsort(v, (size_t)s->n, sizeof *v, cmp_tensor_name);
    return v;
}

static const char *first_duplicate(const bl_tensor **sorted, int n) {
    for (int i = 1; i < n; i++)
        if (strcmp(sorted[i - 1]->name, sorted[i]->name) == 0) return sorted[i]->name;
    return NULL;
}

/* Undoes a failed open so the caller's set is as it was before the call. */
static void set_rollback(bl_tensor_set *s, int n0, int maps0) {
    s->n = n0;
    while (s->n_maps > maps0) bl_mmap_close(&s->maps[--s->n_maps]);
}

typedef struct { uint64_t begin, end; } st_span;

static int cmp_span(const void *a, const void *b) {
    const st_span *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

static bl_status parse_entry(const char *path, const cJSON *e, const uint8_t *data,
                             uint64_t data_size, bl_tensor *t, st_span *span, bl_err *err) {
    const char *name = e->string;
    if (!name || !*name || strlen(name) >= BL_MAX_NAME)
        return bl_fail(err, BL_ERR_FORMAT, "%s: tensor name empty or longer than %d bytes", path,
                       BL_MAX_NAME - 1);
    if (!cJSON_IsObject(e))
        return bl_fail(err, BL_ERR_FORMAT, "%s: tensor '%s': entry is not an object", path, name);
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(jd) || !cJSON_IsArray(js) || !cJSON_IsArray(jo))
        return bl_fail(err, BL_ERR_FORMAT, "%s: tensor '%s': needs dtype, shape, data_offsets",
                       path, name);
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    /* Q8_0 is in our dtype table for GGUF, but safetensors has no block-quantized dtypes. */
    if (!bl_dtype_from_name(jd->valuestring, &t->dtype) || t->dtype == BL_DT_Q8_0)
        return bl_fail(err, BL_ERR_UNSUPPORTED, "%s: tensor '%s': unsupported dtype '%.32s'",
                       path, name, jd->valuestring);
    int nd = cJSON_GetArraySize(js);
    if (nd > BL_MAX_DIMS)
        return bl_fail(err, BL_ERR_FORMAT, "%s: tensor '%s': %d dimensions (max %d)", path, name,
                       nd, BL_MAX_DIMS);
    uint64_t numel = 1;
    t->ndim = nd;
    for (int i = 0; i < nd; i++) {
        uint64_t d;
        if (!json_uint(cJSON_GetArrayItem(js, i), &d))
            return bl_fail(err, BL_ERR_FORMAT, "%s: tensor '%s': bad shape[%d]", path, name, i);
        if (d != 0 && numel > (uint64_t)INT64_MAX / d)
            return bl_fail(err, BL_ERR_FORMAT, "%s: tensor '%s': element count overflows", path,
                           name);
        numel *= d;
        t->shape[i] = (int64_t)d;
    }
    size_t nbytes;
    if (!bl_dtype_nbytes(t->dtype, numel, &nbytes))
        return bl_fail(err, BL_ERR_FORMAT, "%s: tensor '%s': byte size overflows", path, name);
    uint64_t b, en;
    if (cJSON_GetArraySize(jo) != 2 || !json_uint(cJSON_GetArrayItem(jo, 0), &b) ||
        !json_uint(cJSON_GetArrayItem(jo, 1), &en) || b > en || en > data_size)
        return bl_fail(err, BL_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets invalid or beyond the %llu data bytes", path,
                       name, (unsigned long long)data_size);
    if (en - b != (uint64_t)nbytes)
        return bl_fail(err, BL_ERR_FORMAT,
                       "%s: tensor '%s': %llu bytes stored but shape and dtype need %zu", path,
                       name, (unsigned long long)(en - b), nbytes);
    t->data = data + b;
    t->nbytes = nbytes;
    span->begin = b;
    span->end = en;
    return BL_OK;
}

/* Parses the JSON header (already bounds-checked) and appends its tensors to set. */
static bl_status parse_header(const char *path, const uint8_t *file, size_t size, uint64_t hlen,
                              bl_tensor_set *set, char **metadata_json, bl_err *err) {
    const char *text = (const char *)file + 8;
    size_t at = 0;
    cJSON *root = bl_json_parse(text, (size_t)hlen, &at);
    bl_status st = BL_OK;
    st_span *spans = NULL;
    if (!root) { /* only space padding may follow the JSON */
        st = bl_fail(err, BL_ERR_FORMAT, "%s: header is not valid JSON (%s at byte %zu of it)",
                     path, bl_json_refusal(text, (size_t)hlen, at), at);
        goto done;
    }
    if (!cJSON_IsObject(root)) {
        st = bl_fail(err, BL_ERR_FORMAT, "%s: header is not a JSON object", path);
        goto done;
    }
    int n = cJSON_GetArraySize(root), ns = 0;
    spans = bl_calloc((size_t)n, sizeof *spans);
    if (!spans) {
        st = bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    const uint8_t *data = file + 8 + hlen;
    uint64_t data_size = (uint64_t)size - 8 - hlen;
    bool seen_meta = false;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (e->string && strcmp(e->string, "__metadata__") == 0) {
            if (seen_meta || !cJSON_IsObject(e)) {
                st = bl_fail(err, BL_ERR_FORMAT, "%s: __metadata__ repeated or not an object",
                             path);
                goto done;
            }
            seen_meta = true;
            if (metadata_json) {
                char *js = cJSON_PrintUnformatted(e);
                *metadata_json = js ? bl_strdup(js) : NULL;
                cJSON_free(js);
                if (!*metadata_json) {
                    st = bl_fail(err, BL_ERR_NOMEM, "%s: out of memory for metadata", path);
                    goto done;
                }
            }
            continue;
        }
        bl_tensor t;
        st = parse_entry(path, e, data, data_size, &t, &spans[ns], err);
        if (st != BL_OK) goto done;
        st = bl_tensor_set_add(set, &t, err);
        if (st != BL_OK) goto done;
        ns++;
    }
    /* Tensors must not share bytes: a writer that overlaps them is broken or hostile. */
    qsort(spans, (size_t)ns, sizeof *spans, cmp_span);
    uint64_t prev_end = 0;
    for (int i = 0; i < ns; i++) {
        if (spans[i].begin == spans[i].end) continue;
        if (spans[i].begin < prev_end) {
            st = bl_fail(err, BL_ERR_FORMAT, "%s: tensor data ranges overlap at byte %llu", path,
                         (unsigned long long)spans[i].begin);
            goto done;
        }
        prev_end = spans[i].end;
    }
done:
    free(spans);
    cJSON_Delete(root);
    return st;
}

bl_status bl_safetensors_parse(const char *path, const uint8_t *data, size_t size,
                               bl_tensor_set *set, char **metadata_json, bl_err *err) {
    if (metadata_json) *metadata_json = NULL;
    if (!path || !set || (!data && size)) return bl_fail(err, BL_ERR_ARG, "safetensors: NULL argument");
    int n0 = set->n, maps0 = set->n_maps;
    uint64_t hlen = 0;
    bl_status st = BL_OK;
    if (size < 8) {
        st = bl_fail(err, BL_ERR_FORMAT, "%s: %zu bytes is too small for a safetensors file",
                     path, size);
        goto fail;
    }
    memcpy(&hlen, data, 8); /* little-endian host assumed, as everywhere in bitllm */
    if (hlen > (uint64_t)size - 8 || hlen > ST_MAX_HEADER || hlen < 2 || data[8] != '{') {
        char what[96];
        bl_describe_content(data, size, size, what, sizeof what);
        st = bl_fail(err, BL_ERR_FORMAT,
                     "%s: not a safetensors file (header length %llu invalid for a file of %zu "
                     "bytes, or no JSON header; %s)",
                     path, (unsigned long long)hlen, size, what);
        goto fail;
    }
    st = bl_tensor_set_begin_file(set, path, err);
    if (st == BL_OK) st = parse_header(path, data, size, hlen, set, metadata_json, err);
    if (st != BL_OK) goto fail;
    const bl_tensor **names = sorted_tensors(set);
    if (!names) {
        st = bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    const char *dup = first_duplicate(names, set->n);
    if (dup) st = bl_fail(err, BL_ERR_FORMAT, "%s: tensor '%s' defined twice", path, dup);
    free(names);
    if (st != BL_OK) goto fail;
    return BL_OK;
fail:
    set_rollback(set, n0, maps0);
    if (metadata_json) {
        free(*metadata_json);
        *metadata_json = NULL;
    }
    return st;
}

bl_status bl_safetensors_open(const char *path, bl_tensor_set *set, char **metadata_json,
                              bl_err *err) {
    if (metadata_json) *metadata_json = NULL;
    if (!path || !set) return bl_fail(err, BL_ERR_ARG, "safetensors: NULL argument");
    bl_mmap m;
    bl_status st = bl_mmap_open(&m, path, err);
    if (st != BL_OK) return st;
    int n0 = set->n, maps0 = set->n_maps;
    st = bl_safetensors_parse(path, m.data, m.size, set, metadata_json, err);
    if (st != BL_OK) {
        bl_mmap_close(&m);
        return st;
    }
    st = bl_tensor_set_own_map(set, &m, err);
    if (st != BL_OK) {
        set_rollback(set, n0, maps0);
        if (metadata_json) {
            free(*metadata_json);
            *metadata_json = NULL;
        }
    }
    return st;
}

static char *join_path(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = bl_malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static bool is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* A shard name from the index must stay inside the model directory. */
static bool safe_shard_name(const char *s) {
    return *s && strchr(s, '/') == NULL && strcmp(s, ".") != 0 && strcmp(s, "..") != 0 &&
           strlen(s) < 1024;
}

static bl_status open_index(const char *dir, const char *ipath, bl_tensor_set *set,
                            bl_err *err) {
    char *text = NULL;
    size_t len = 0;
    bl_status st = bl_read_file(ipath, &text, &len, err);
    if (st != BL_OK) return st;
    size_t at = 0;
    cJSON *root = bl_json_parse(text, len, &at);
    const char **shards = NULL;
    const bl_tensor **names = NULL;
    int n_shards = 0;
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!root) {
        st = bl_fail(err, BL_ERR_FORMAT, "%s: not valid JSON (%s at byte %zu)", ipath,
                     bl_json_refusal(text, len, at), at);
        goto done;
    }
    if (!cJSON_IsObject(root) || !cJSON_IsObject(wm) || !wm->child) {
        st = bl_fail(err, BL_ERR_FORMAT, "%s: not a JSON object with a non-empty weight_map",
                     ipath);
        goto done;
    }
    int n = cJSON_GetArraySize(wm);
    shards = bl_calloc((size_t)n, sizeof *shards);
    if (!shards) {
        st = bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", ipath);
        goto done;
    }
    /* Each shard is opened when first named, so a bad entry fails before any quadratic work. */
    for (const cJSON *e = wm->child; e; e = e->next) {
        if (!cJSON_IsString(e) || !safe_shard_name(e->valuestring)) {
            st = bl_fail(err, BL_ERR_FORMAT, "%s: weight_map entry '%.128s' has a bad file name",
                         ipath, e->string ? e->string : "");
            goto done;
        }
        bool known = false;
        for (int i = 0; i < n_shards && !known; i++) known = strcmp(shards[i], e->valuestring) == 0;
        if (known) continue;
        shards[n_shards++] = e->valuestring;
        char *sp = join_path(dir, e->valuestring);
        if (!sp) {
            st = bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", ipath);
            goto done;
        }
        st = bl_safetensors_open(sp, set, NULL, err);
        free(sp);
        if (st != BL_OK) {
            bl_fail_context(err, st, "%s", ipath); /* the shard's message, with its index */
            goto done;
        }
    }
    /* Every name the index promises must be in the very shard it names. */
    names = sorted_tensors(set);
    if (!names) {
        st = bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", ipath);
        goto done;
    }
    for (const cJSON *e = wm->child; e; e = e->next) {
        bl_tensor key;
        snprintf(key.name, sizeof key.name, "%s", e->string ? e->string : "");
        const bl_tensor *kp = &key, *const *hit =
            strlen(e->string ? e->string : "") < BL_MAX_NAME
                ? bsearch(&kp, names, (size_t)set->n, sizeof *names, cmp_tensor_name)
                : NULL;
        const char *file = hit ? bl_tensor_set_file(set, *hit) : NULL;
        const char *in = file ? strrchr(file, '/') : NULL;
        in = in ? in + 1 : file;
        if (!hit) {
            st = bl_fail(err, BL_ERR_FORMAT, "%s: tensor '%.128s' is not in shard '%.256s'",
                         ipath, e->string ? e->string : "", e->valuestring);
            goto done;
        }
        if (in && strcmp(in, e->valuestring) != 0) {
            st = bl_fail(err, BL_ERR_FORMAT,
                         "%s: weight_map puts tensor '%.128s' in shard '%.256s', but it is in "
                         "'%.256s'",
                         ipath, e->string, e->valuestring, in);
            goto done;
        }
    }
done:
    free(names);
    free(shards);
    cJSON_Delete(root);
    free(text);
    return st;
}

bl_status bl_hf_open_tensors(const char *dir, bl_tensor_set *set, bl_err *err) {
    if (!dir || !set) return bl_fail(err, BL_ERR_ARG, "hf: NULL argument");
    if (is_file(dir)) return bl_safetensors_open(dir, set, NULL, err);
    char *ipath = join_path(dir, "model.safetensors.index.json");
    char *spath = join_path(dir, "model.safetensors");
    bl_status st;
    if (!ipath || !spath) {
        st = bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", dir);
    } else if (is_file(ipath)) {
        int n0 = set->n, maps0 = set->n_maps;
        st = open_index(dir, ipath, set, err);
        if (st != BL_OK) set_rollback(set, n0, maps0);
    } else if (is_file(spath)) {
        st = bl_safetensors_open(spath, set, NULL, err);
    } else {
        st = bl_fail(err, BL_ERR_IO, "%s: no model.safetensors or model.safetensors.index.json",
                     dir);
    }
    free(ipath);
    free(spath);
    return st;
}
