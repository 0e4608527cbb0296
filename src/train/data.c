/* Training data: text packed into BOS-started rows, token files (reusable teacher-generated
 * data), and the order in which training visits the rows. */
#include "train/train_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN_MAGIC "# bitllm-tokens v1"

void bl_train_data_free(bl_train_data *d) {
    if (!d) return;
    free(d->ids);
    memset(d, 0, sizeof *d);
}

bl_status bl_train_data_from_ids(const int32_t *ids, size_t n, int seq, int bos,
                                 bl_train_data *out, bl_err *err) {
    memset(out, 0, sizeof *out);
    if (seq < 2) return bl_fail(err, BL_ERR_ARG, "sequence length must be at least 2, got %d", seq);
    const size_t body = (size_t)seq - (bos >= 0 ? 1 : 0);
    const size_t rows = n / body;
    if (rows == 0)
        return bl_fail(err, BL_ERR_ARG, "%zu tokens do not fill one sequence of %d", n, seq);
    out->ids = bl_malloc_array(rows * (size_t)seq, sizeof(int32_t));
    if (!out->ids) return bl_fail(err, BL_ERR_NOMEM, "out of memory for %zu sequences", rows);
    for (size_t r = 0; r < rows; r++) {
        int32_t *row = out->ids + r * (size_t)seq;
        size_t w = 0;
        if (bos >= 0) row[w++] = bos;
        memcpy(row + w, ids + r * body, body * sizeof(int32_t));
    }
    out->n_rows = (int64_t)rows;
    out->seq = seq;
    return BL_OK;
}

/* Parses a token file (text already in memory). */
static bl_status parse_tokens(const char *path, const char *text, int seq, int vocab,
                              bl_train_data *out, bl_err *err) {
    long long rows = -1, file_seq = -1;
    const char *hdr = strstr(text, "rows=");
    const char *sq = strstr(text, "seq=");
    const char *eol = strchr(text, '\n');
    if (!eol || !hdr || !sq || hdr > eol || sq > eol || sscanf(hdr, "rows=%lld", &rows) != 1 ||
        sscanf(sq, "seq=%lld", &file_seq) != 1 || rows < 1 || file_seq < 2 || file_seq > 1 << 24)
        return bl_fail(err, BL_ERR_FORMAT, "%s: bad token-file header", path);
    if (seq > file_seq)
        return bl_fail(err, BL_ERR_ARG, "%s: rows have %lld tokens, fewer than --seq %d", path,
                       file_seq, seq);
    out->ids = bl_malloc_array((size_t)rows * (size_t)seq, sizeof(int32_t));
    if (!out->ids) return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", path);
    out->n_rows = rows;
    out->seq = seq;
    const char *p = eol + 1;
    for (long long r = 0; r < rows; r++) {
        for (long long j = 0; j < file_seq; j++) {
            char *end;
            errno = 0;
            long v = strtol(p, &end, 10);
            if (end == p || errno || v < 0 || v >= vocab || (*end && *end != ' ' && *end != '\n'))
                return bl_fail(err, BL_ERR_FORMAT, "%s: row %lld, token %lld: bad id (vocab %d)",
                               path, r + 1, j + 1, vocab);
            if (j < seq) out->ids[r * seq + j] = (int32_t)v;
            p = end;
        }
        while (*p == ' ') p++;
        if (*p != '\n' && *p != 0)
            return bl_fail(err, BL_ERR_FORMAT, "%s: row %lld has more than %lld tokens", path,
                           r + 1, file_seq);
        if (*p) p++;
    }
    return BL_OK;
}

bl_status bl_train_data_load(const bl_model *m, const char *path, int seq, bl_train_data *out,
                             bl_err *err) {
    memset(out, 0, sizeof *out);
    char *text;
    size_t len;
    bl_status s = bl_read_file(path, &text, &len, err);
    if (s) return s;
    if (strncmp(text, TOKEN_MAGIC, strlen(TOKEN_MAGIC)) == 0) {
        s = parse_tokens(path, text, seq, m->cfg.vocab_size, out, err);
        free(text);
        if (s) bl_train_data_free(out);
        return s;
    }
    if (!m->tok) {
        free(text);
        return bl_fail(err, BL_ERR_ARG, "%s: the model has no tokenizer to read text with", path);
    }
    int32_t *ids = NULL;
    size_t n = 0;
    s = bl_tokenizer_encode(m->tok, text, len, false, &ids, &n, err);
    free(text);
    if (!s) s = bl_train_data_from_ids(ids, n, seq, bl_model_adds_bos(m) ? m->cfg.bos_id : -1,
                                           out, err);
    free(ids);
    return s;
}

bl_status bl_train_data_save(const bl_train_data *d, int vocab, const char *path, bl_err *err) {
    /* up to 11 bytes per id */
    const size_t cap = 128 + (size_t)d->n_rows * (size_t)d->seq * 12;
    char *buf = malloc(cap);
    if (!buf) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    size_t w = (size_t)snprintf(buf, cap, "%s rows=%lld seq=%d vocab=%d\n", TOKEN_MAGIC,
                                (long long)d->n_rows, d->seq, vocab);
    for (int64_t r = 0; r < d->n_rows; r++)
        for (int j = 0; j < d->seq; j++)
            w += (size_t)snprintf(buf + w, cap - w, "%d%c", d->ids[r * d->seq + j],
                                  j + 1 == d->seq ? '\n' : ' ');
    bl_status s = bl_write_file_atomic(path, buf, w, err);
    free(buf);
    return s;
}

/* ---- visiting order ---- */

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void shuffle(tr_order *o, int64_t epoch) {
    const int64_t n = o->d->n_rows;
    bl_rng r;
    bl_rng_seed(&r, mix64(o->seed ^ mix64((uint64_t)epoch + 0x9e3779b97f4a7c15ull)));
    for (int64_t i = 0; i < n; i++) o->perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) { /* Fisher-Yates */
        int64_t j = (int64_t)(bl_rng_u64(&r) % (uint64_t)(i + 1));
        int64_t t = o->perm[i];
        o->perm[i] = o->perm[j];
        o->perm[j] = t;
    }
    o->epoch = epoch;
}

bl_status tr_order_init(tr_order *o, const bl_train_data *d, uint64_t seed, bl_err *err) {
    o->d = d;
    o->seed = seed;
    o->perm = malloc(sizeof(int64_t) * (size_t)d->n_rows);
    if (!o->perm) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    shuffle(o, 0);
    return BL_OK;
}

const int32_t *tr_order_row(tr_order *o, int64_t pos) {
    const int64_t e = pos / o->d->n_rows;
    if (e != o->epoch) shuffle(o, e);
    return o->d->ids + o->perm[pos % o->d->n_rows] * o->d->seq;
}

void tr_order_free(tr_order *o) {
    free(o->perm);
    o->perm = NULL;
}
