/* Calibration data: a text file (tokenized with the model's tokenizer), a tokenized NumPy array
 * (.npy of 16- to 64-bit integers, 1-D or 2-D, read as one token stream in C order), a raw token
 * file (little-endian int32 or uint16, told apart by content), or sequences sampled from the FP
 * model itself (the teacher-generated data of distillation). And the cut of the calibration
 * tokens into the sequences that block reconstruction trains on. */
#include "bitllm/io.h"
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

/* One little-endian integer of `width` bytes (1, 2, 4 or 8): its value, signed unless `uns`,
 * as a 64-bit two's-complement pattern (an unsigned value is the pattern read as unsigned). */
static uint64_t decode_int(const uint8_t *b, int width, bool uns) {
    uint64_t u = 0;
    for (int k = width - 1; k >= 0; k--) u = u << 8 | b[k];
    if (uns || width == 8) return u;
    const uint64_t sign = (uint64_t)1 << (8 * width - 1); /* sign-extend from the width's top bit */
    return (u ^ sign) - sign;
}

/* Whether a decoded integer is a token id below `vocab`. */
static bool is_id(uint64_t v, bool uns, int vocab) {
    return uns ? v < (uint64_t)vocab : (int64_t)v >= 0 && (int64_t)v < vocab;
}

/* Little-endian integers of `width` bytes (signed unless uns) into int32 ids: how many are ids
 * in [0, vocab) before the first that is not (n when all are). */
static size_t decode_ints(const uint8_t *p, size_t n, int width, bool uns, int vocab,
                          int32_t *out) {
    for (size_t i = 0; i < n; i++) {
        const uint64_t v = decode_int(p + i * (size_t)width, width, uns);
        if (!is_id(v, uns, vocab)) return i;
        out[i] = (int32_t)v;
    }
    return n;
}

/* A .npy array of integer token ids (16 to 64 bits, signed or unsigned), 1-D or 2-D, read in C
 * order; the header is bl_npy_parse's. */
static bl_status load_npy(const char *path, const uint8_t *d, size_t len, int vocab,
                          bl_calib_data *out, bl_err *err) {
    bl_npy_header h;
    bl_status s = bl_npy_parse(d, len, path, &h, err);
    if (s) return s;
    if (h.kind == 'f' || h.itemsize < 2)
        return bl_fail(err, BL_ERR_FORMAT, "%s: token arrays must be integers of 16 to 64 bits "
                       "(int16/32/64, uint16/32/64), not '%s'", path, h.descr);
    if (h.ndim < 1 || h.ndim > 2)
        return bl_fail(err, BL_ERR_FORMAT, "%s: token arrays must be 1-D or 2-D, not %d-D", path,
                       h.ndim);
    if (h.fortran_order && h.ndim == 2 && h.shape[0] > 1 && h.shape[1] > 1)
        return bl_fail(err, BL_ERR_FORMAT, "%s: a Fortran-order array; save it in C order", path);
    if (h.numel == 0) return bl_fail(err, BL_ERR_FORMAT, "%s: the token array is empty", path);
    const uint8_t *data = d + h.data_offset;
    const int width = h.itemsize;
    const bool uns = h.kind == 'u';
    out->ids = bl_malloc_array((size_t)h.numel, sizeof(int32_t));
    if (!out->ids) return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", path);
    out->n = (size_t)h.numel;
    const size_t good = decode_ints(data, out->n, width, uns, vocab, out->ids);
    if (good < out->n) {
        const uint64_t v = decode_int(data + good * (size_t)width, width, uns);
        char num[24];
        if (uns) snprintf(num, sizeof num, "%llu", (unsigned long long)v);
        else snprintf(num, sizeof num, "%lld", (long long)(int64_t)v);
        return bl_fail(err, BL_ERR_FORMAT, "%s: token %zu is %s, outside the model's vocabulary "
                       "of %d", path, good, num, vocab);
    }
    if (h.ndim == 2)
        snprintf(out->what, sizeof out->what, "npy %s [%lld x %lld]", h.descr,
                 (long long)h.shape[0], (long long)h.shape[1]);
    else snprintf(out->what, sizeof out->what, "npy %s [%lld]", h.descr, (long long)h.shape[0]);
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
    if (len % 4 == 0 && decode_ints(d, len / 4, 4, false, vocab, out->ids) == len / 4) {
        out->n = len / 4;
        snprintf(out->what, sizeof out->what, "raw int32 little-endian, %zu tokens", out->n);
        return BL_OK;
    }
    if (decode_ints(d, len / 2, 2, true, vocab, out->ids) == len / 2) {
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
    bl_status s = bl_train_data_from_ids(o->calib_ids, o->n_calib, T,
                                          bl_model_adds_bos(src) ? src->cfg.bos_id : -1, &td, err);
    if (s) return bl_fail_context(err, s, "calibration sequences");
    *rows = td.ids;
    *n_rows = td.n_rows;
    return BL_OK;
}
