/* Calibration data: a text file (tokenized with the model's tokenizer), a tokenized NumPy array
 * (.npy of int32, int64 or uint16, 1-D or 2-D, read as one token stream in C order), a raw token
 * file (little-endian int32 or uint16, told apart by content), or sequences sampled from the FP
 * model itself (the teacher-generated data of distillation). And the cut of the calibration
 * tokens into the sequences that block reconstruction trains on. */
#include "bitllm/quantize.h"
#include "bitllm/tokenizer.h"
#include "bitllm/train.h"
#include "ptq/ptq_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void bl_calib_data_free(bl_calib_data *d) {
    if (!d) return;
    free(d->ids);
    memset(d, 0, sizeof *d);
}

static bl_status check_ids(const char *path, const int32_t *ids, size_t n, int vocab,
                           bl_err *err) {
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab)
            return bl_fail(err, BL_ERR_FORMAT, "%s: token %zu is %d, outside the model's "
                           "vocabulary of %d", path, i, ids[i], vocab);
    return BL_OK;
}

/* One little-endian integer of `width` bytes (2: unsigned; 4: signed unless uns; 8: signed). */
static int64_t decode_int(const uint8_t *b, int width, bool uns) {
    if (width == 2) return (int64_t)(b[0] | b[1] << 8);
    if (width == 4) {
        const uint32_t u = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                           (uint32_t)b[3] << 24;
        return uns ? (int64_t)u : (int64_t)(int32_t)u;
    }
    uint64_t u = 0;
    for (int k = 7; k >= 0; k--) u = u << 8 | b[k];
    return (int64_t)u;
}

/* Little-endian integers of `width` bytes (signed unless uns) into int32 ids; false when one
 * does not fit an int32 or lies outside [0, vocab). */
static bool decode_ints(const uint8_t *p, size_t n, int width, bool uns, int vocab,
                        int32_t *out) {
    for (size_t i = 0; i < n; i++) {
        const int64_t v = decode_int(p + i * (size_t)width, width, uns);
        if (v < 0 || v >= vocab) return false;
        out[i] = (int32_t)v;
    }
    return true;
}

/* .npy header: 'descr' among <i4, <i8, <u2, C order, 1-D/2-D. */
static bl_status load_npy(const char *path, const uint8_t *d, size_t len, int vocab,
                          bl_calib_data *out, bl_err *err) {
    if (len < 10) return bl_fail(err, BL_ERR_FORMAT, "%s: truncated .npy header", path);
    const int major = d[6];
    size_t hl, at;
    if (major == 1) {
        hl = (size_t)(d[8] | d[9] << 8);
        at = 10;
    } else if ((major == 2 || major == 3) && len >= 12) {
        hl = (size_t)d[8] | (size_t)d[9] << 8 | (size_t)d[10] << 16 | (size_t)d[11] << 24;
        at = 12;
    } else {
        return bl_fail(err, BL_ERR_FORMAT, "%s: unsupported .npy version %d", path, major);
    }
    if (hl > len - at) return bl_fail(err, BL_ERR_FORMAT, "%s: truncated .npy header", path);
    char hdr[1024];
    if (hl >= sizeof hdr) return bl_fail(err, BL_ERR_FORMAT, "%s: .npy header too long", path);
    memcpy(hdr, d + at, hl);
    hdr[hl] = 0;
    const char *de = strstr(hdr, "'descr':"), *fo = strstr(hdr, "'fortran_order':"),
               *sh = strstr(hdr, "'shape':");
    if (!de || !fo || !sh) return bl_fail(err, BL_ERR_FORMAT, "%s: bad .npy header", path);
    char descr[16] = "";
    if (sscanf(de + 8, " '%15[^']'", descr) != 1)
        return bl_fail(err, BL_ERR_FORMAT, "%s: bad .npy dtype", path);
    int width;
    bool uns;
    if (!strcmp(descr, "<i4")) width = 4, uns = false;
    else if (!strcmp(descr, "<i8")) width = 8, uns = false;
    else if (!strcmp(descr, "<u2")) width = 2, uns = true;
    else
        return bl_fail(err, BL_ERR_FORMAT, "%s: token arrays must be int32, int64 or uint16 "
                       "(little-endian), not '%s'", path, descr);
    if (strncmp(fo + 16, " False", 6) != 0)
        return bl_fail(err, BL_ERR_FORMAT, "%s: a Fortran-order array; save it in C order", path);
    /* 'shape': (n,) or (a, b) */
    long long dim[3] = {0, 0, 0};
    int dims = 0;
    const char *p = strchr(sh, '('), *close = p ? strchr(p, ')') : NULL;
    for (p = p ? p + 1 : NULL; p && p < close && dims < 3;) {
        while (p < close && (*p == ' ' || *p == ',')) p++;
        if (p >= close) break;
        char *end;
        dim[dims++] = strtoll(p, &end, 10);
        if (end == p || dim[dims - 1] < 0) {
            dims = 0;
            break;
        }
        p = end;
    }
    if (!close || dims < 1 || dims > 2)
        return bl_fail(err, BL_ERR_FORMAT, "%s: token arrays must be 1-D or 2-D", path);
    const long long s0 = dim[0], s1 = dims == 2 ? dim[1] : 1;
    const uint64_t n = (uint64_t)s0 * (uint64_t)s1;
    const size_t data_at = at + hl;
    if (n == 0) return bl_fail(err, BL_ERR_FORMAT, "%s: the token array is empty", path);
    if ((len - data_at) / (size_t)width < n || len - data_at != n * (size_t)width)
        return bl_fail(err, BL_ERR_FORMAT, "%s: %zu bytes of data for %llu tokens of %d bytes",
                       path, len - data_at, (unsigned long long)n, width);
    out->ids = bl_malloc_array((size_t)n, sizeof(int32_t));
    if (!out->ids) return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", path);
    out->n = (size_t)n;
    if (!decode_ints(d + data_at, (size_t)n, width, uns, vocab, out->ids)) {
        for (size_t i = 0; i < n; i++) { /* the first bad one, for the message */
            const int64_t v = decode_int(d + data_at + i * (size_t)width, width, uns);
            if (v < 0 || v >= vocab)
                return bl_fail(err, BL_ERR_FORMAT, "%s: token %zu is %lld, outside the model's "
                               "vocabulary of %d", path, i, (long long)v, vocab);
        }
    }
    if (dims == 2) snprintf(out->what, sizeof out->what, "npy %s [%lld x %lld]", descr, s0, s1);
    else snprintf(out->what, sizeof out->what, "npy %s [%lld]", descr, s0);
    return BL_OK;
}

/* Raw little-endian token ids: int32 when the size is a multiple of 4 and every value is a valid
 * id, else uint16 when every value is; anything else is refused. */
static bl_status load_bin(const char *path, const uint8_t *d, size_t len, int vocab,
                          bl_calib_data *out, bl_err *err) {
    if (len == 0 || len % 2)
        return bl_fail(err, BL_ERR_FORMAT, "%s: %zu bytes: not a text file and not raw uint16 or "
                       "int32 token ids", path, len);
    out->ids = bl_malloc_array(len / 2, sizeof(int32_t));
    if (!out->ids) return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", path);
    if (len % 4 == 0 && decode_ints(d, len / 4, 4, false, vocab, out->ids)) {
        out->n = len / 4;
        snprintf(out->what, sizeof out->what, "raw int32 little-endian, %zu tokens", out->n);
        return BL_OK;
    }
    if (decode_ints(d, len / 2, 2, true, vocab, out->ids)) {
        out->n = len / 2;
        snprintf(out->what, sizeof out->what, "raw uint16 little-endian, %zu tokens", out->n);
        return BL_OK;
    }
    free(out->ids);
    out->ids = NULL;
    return bl_fail(err, BL_ERR_FORMAT, "%s: binary data that is neither raw int32 nor raw uint16 "
                   "little-endian token ids below the vocabulary size %d (nor .npy, nor text)",
                   path, vocab);
}

bl_status bl_calib_data_load(const bl_model *m, const char *path, bl_calib_data *out,
                             bl_err *err) {
    memset(out, 0, sizeof *out);
    char *text;
    size_t len;
    bl_status s = bl_read_file(path, &text, &len, err);
    if (s) return s;
    const uint8_t *d = (const uint8_t *)text;
    const int vocab = m->cfg.vocab_size;
    if (len >= 6 && memcmp(d, "\x93NUMPY", 6) == 0) {
        s = load_npy(path, d, len, vocab, out, err);
    } else if (memchr(text, 0, len)) { /* token ids have zero bytes; text has none */
        s = load_bin(path, d, len, vocab, out, err);
    } else if (!m->tok) {
        s = bl_fail(err, BL_ERR_ARG, "%s is text and %s has no tokenizer (pass --tokenizer, or "
                    "give tokenized .npy/.bin data)", path, m->path);
    } else {
        s = bl_tokenizer_encode(m->tok, text, len, false, &out->ids, &out->n, err);
        if (!s && out->n == 0) s = bl_fail(err, BL_ERR_ARG, "%s: no tokens", path);
        if (!s) snprintf(out->what, sizeof out->what, "text, %zu tokens", out->n);
    }
    if (!s) s = check_ids(path, out->ids, out->n, vocab, err);
    free(text);
    if (s) bl_calib_data_free(out);
    return s;
}

bl_status bl_calib_data_generate(const bl_model *m, int64_t n_seq, int seq, uint64_t seed,
                                 bl_progress_fn progress, void *progress_ctx, bl_calib_data *out,
                                 bl_err *err) {
    memset(out, 0, sizeof *out);
    bl_train_data td;
    bl_status s = bl_train_data_generate(m, n_seq, seq, seed, progress, progress_ctx, &td, err);
    if (s) return bl_fail_context(err, s, "generating calibration sequences");
    out->ids = td.ids;
    out->n = (size_t)td.n_rows * (size_t)td.seq;
    out->rows = true;
    out->seq = seq;
    snprintf(out->what, sizeof out->what, "generated by the model: %lld sequences of %d tokens "
             "(seed %llu)", (long long)n_seq, seq, (unsigned long long)seed);
    return BL_OK;
}

bl_status ptq_calib_sequences(const bl_model *src, const bl_quant_opts *o, int32_t **rows,
                              int64_t *n_rows, bl_err *err) {
    *rows = NULL;
    *n_rows = 0;
    const int T = o->calib_ctx;
    if (T < 2 || T > src->cfg.max_seq)
        return bl_fail(err, BL_ERR_ARG, "calibration sequence length %d: need 2..%d (the "
                       "model's context)", T, src->cfg.max_seq);
    if (o->calib_rows) {
        const size_t n = o->n_calib / (size_t)T;
        if (n == 0) return bl_fail(err, BL_ERR_ARG, "no calibration sequence of %d tokens", T);
        *rows = bl_malloc_array(n * (size_t)T, sizeof(int32_t));
        if (!*rows) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
        memcpy(*rows, o->calib_ids, n * (size_t)T * sizeof(int32_t));
        *n_rows = (int64_t)n;
        return BL_OK;
    }
    bl_train_data td;
    bl_status s = bl_train_data_from_ids(o->calib_ids, o->n_calib, T, src->cfg.bos_id, &td, err);
    if (s) return bl_fail_context(err, s, "calibration sequences");
    *rows = td.ids;
    *n_rows = td.n_rows;
    return BL_OK;
}
