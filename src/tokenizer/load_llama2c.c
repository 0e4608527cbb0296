/* llama2.c tokenizer.bin: int32 max_token_length, then for each of vocab_size tokens an f32 score,
 * an int32 byte length and the bytes. The file does not store the token count (the model does) nor
 * token types, so types follow the layout llama2.c's exporter writes: <unk>, then BOS/EOS spelled
 * "\n<s>\n" and "\n</s>\n" at ids 1 and 2, then <0xXX> byte tokens. Pieces already use plain
 * spaces; "▁" is mapped to a space too should a file keep it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

static int32_t rd_i32(const uint8_t *p) {
    uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    int32_t r;
    memcpy(&r, &v, 4);
    return r;
}

static float rd_f32(const uint8_t *p) {
    uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float r;
    memcpy(&r, &v, 4);
    return r;
}

static int infer_type(int32_t id, const char *s, size_t len) {
    if (tk_parse_byte_piece(s, len) >= 0) return TK_BYTE;
    if (id == 0 && len == 5 && memcmp(s, "<unk>", 5) == 0) return TK_UNKNOWN;
    if ((len == 5 && memcmp(s, "\n<s>\n", 5) == 0) || (len == 6 && memcmp(s, "\n</s>\n", 6) == 0))
        return TK_CONTROL;
    return TK_NORMAL;
}

/* Well-formed (score, length, bytes) records from off to the end of the file, counted to say how
 * many tokens a file for another vocabulary holds; stops at the first record that does not fit. */
static int64_t count_records(const uint8_t *p, size_t size, size_t off, int32_t max_len) {
    int64_t n = 0;
    while (size - off >= 8) {
        int32_t len = rd_i32(p + off + 4);
        if (len < 0 || len > max_len || (size_t)len > size - off - 8) break;
        off += 8 + (size_t)len;
        n++;
    }
    return off == size ? n : -1;
}

bl_status bl_tokenizer_from_llama2c(const char *path, const uint8_t *p, size_t size,
                                    int vocab_size, bl_tokenizer **out, bl_err *err) {
    *out = NULL;
    if (vocab_size <= 0 || vocab_size > TK_MAX_VOCAB)
        return bl_fail(err, BL_ERR_ARG, "%s: vocabulary size %d out of range", path, vocab_size);
    bl_tokenizer *t = NULL;
    tk_buf piece = {0};
    bl_status st;
    char what[96];
    bl_describe_content(p, size, size, what, sizeof what);
    if (size < 4) {
        st = bl_fail(err, BL_ERR_FORMAT, "%s: not a llama2.c tokenizer.bin (%zu bytes; %s)", path,
                     size, what);
        goto fail;
    }
    int32_t max_len = rd_i32(p);
    if (max_len <= 0 || max_len > (1 << 20)) {
        st = bl_fail(err, BL_ERR_FORMAT,
                     "%s: not a llama2.c tokenizer.bin (max_token_length %d; %s)", path,
                     (int)max_len, what);
        goto fail;
    }
    t = tk_new(BL_TOK_SPM, vocab_size, path, err);
    if (!t) {
        st = err ? err->code : BL_ERR_NOMEM;
        goto fail;
    }
    t->score = bl_malloc_array((size_t)vocab_size, sizeof *t->score);
    if (!t->score) goto nomem;
    size_t off = 4;
    for (int32_t id = 0; id < vocab_size; id++) {
        if (off == size) {
            st = bl_fail(err, BL_ERR_FORMAT, "%s: holds %d tokens but the model's vocabulary has "
                         "%d: a tokenizer for another model?", path, (int)id, vocab_size);
            goto fail;
        }
        if (size - off < 8) {
            st = bl_fail(err, BL_ERR_FORMAT, "%s: truncated at token %d of %d (offset %zu)", path,
                         (int)id, vocab_size, off);
            goto fail;
        }
        float score = rd_f32(p + off);
        int32_t len = rd_i32(p + off + 4);
        off += 8;
        if (len < 0 || (size_t)len > size - off) {
            st = bl_fail(err, BL_ERR_FORMAT, "%s: token %d has length %d but %zu bytes remain",
                         path, (int)id, (int)len, size - off);
            goto fail;
        }
        if (len > max_len) {
            st = bl_fail(err, BL_ERR_FORMAT, "%s: token %d has length %d, over the file's "
                         "max_token_length %d", path, (int)id, (int)len, (int)max_len);
            goto fail;
        }
        if (!isfinite(score)) {
            st = bl_fail(err, BL_ERR_FORMAT, "%s: token %d has a non-finite score", path, (int)id);
            goto fail;
        }
        if (!tk_unmeta((const char *)p + off, (size_t)len, &piece)) goto nomem;
        int type = infer_type(id, piece.p, piece.n);
        if (!tk_set_token(t, id, piece.p, piece.n, type)) goto nomem;
        if (type == TK_UNKNOWN) t->unk = id;
        t->score[id] = score;
        off += (size_t)len;
    }
    if (off != size) {
        int64_t more = count_records(p, size, off, max_len);
        if (more > 0)
            st = bl_fail(err, BL_ERR_FORMAT, "%s: holds %lld tokens but the model's vocabulary "
                         "has %d: a tokenizer for another model?", path,
                         (long long)(vocab_size + more), vocab_size);
        else
            st = bl_fail(err, BL_ERR_FORMAT, "%s: %zu bytes after the last of the %d tokens",
                         path, size - off, vocab_size);
        goto fail;
    }
    /* llama2.c: BOS 1, EOS 2, a dummy-prefix space, BOS by default */
    t->bos = vocab_size > 1 ? 1 : -1;
    t->eos = vocab_size > 2 ? 2 : -1;
    t->add_bos = true;
    t->prefix = TK_PREFIX_EVERY;
    st = tk_finish(t, err);
    if (st) goto fail;
    tk_buf_free(&piece);
    *out = t;
    return BL_OK;
nomem:
    st = bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", path);
fail:
    tk_buf_free(&piece);
    bl_tokenizer_free(t);
    return st;
}

bl_status bl_tokenizer_load_llama2c(const char *path, int vocab_size, bl_tokenizer **out,
                                    bl_err *err) {
    *out = NULL;
    if (vocab_size <= 0 || vocab_size > TK_MAX_VOCAB)
        return bl_fail(err, BL_ERR_ARG, "%s: vocabulary size %d out of range", path, vocab_size);
    char *data;
    size_t size;
    bl_status st = bl_read_file(path, &data, &size, err);
    if (st) return st;
    st = bl_tokenizer_from_llama2c(path, (const uint8_t *)data, size, vocab_size, out, err);
    free(data);
    return st;
}
