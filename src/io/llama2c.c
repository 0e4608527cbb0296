/* llama2.c checkpoints (karpathy/llama2.c export.py):
 *   v0 (legacy): 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
 *       vocab_size < 0 means an unshared classifier follows), then fp32 weights: token embedding,
 *       per-type blocks over layers, final norm, freq_cis real/imag (skipped), classifier.
 *   v1: 256-byte header (magic "ak42", version, the 7 ints, u8 shared_classifier), then fp32:
 *       the norms first, then embedding, per-type weight blocks, classifier if not shared.
 *   v2: like v1 plus an int32 group size at byte 37; norms in fp32, then each weight as int8
 *       values followed by one fp32 scale per group (Q8_0 with groups of group_size); these are
 *       dequantized into one buffer owned by the set.
 * Weight matrices are row-major {out, in}, which is exactly our tensor layout. */
#include "bitllm/io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define L2C_MAGIC 0x616b3432u
#define L2C_MAX_PARAM (1 << 20)

typedef enum {
    G_TOK, G_ATTN_NORM, G_WQ, G_WK, G_WV, G_WO, G_FFN_NORM, G_W1, G_W2, G_W3, G_FINAL_NORM,
    G_FREQ, G_OUT, G_END
} l2c_group;

/* File order of each format; G_FREQ is read past, G_OUT is present only when not shared. */
static const l2c_group order_v0[] = {G_TOK, G_ATTN_NORM, G_WQ, G_WK, G_WV, G_WO, G_FFN_NORM,
                                     G_W1, G_W2, G_W3, G_FINAL_NORM, G_FREQ, G_OUT, G_END};
static const l2c_group order_v12[] = {G_ATTN_NORM, G_FFN_NORM, G_FINAL_NORM, G_TOK, G_WQ, G_WK,
                                      G_WV, G_WO, G_W1, G_W2, G_W3, G_OUT, G_END};

/* GGUF tensor name; per-layer groups get the "blk.N." prefix. */
static const char *group_name(l2c_group g) {
    switch (g) {
    case G_TOK: return "token_embd.weight";
    case G_ATTN_NORM: return "attn_norm.weight";
    case G_WQ: return "attn_q.weight";
    case G_WK: return "attn_k.weight";
    case G_WV: return "attn_v.weight";
    case G_WO: return "attn_output.weight";
    case G_FFN_NORM: return "ffn_norm.weight";
    case G_W1: return "ffn_gate.weight";
    case G_W2: return "ffn_down.weight";
    case G_W3: return "ffn_up.weight";
    case G_FINAL_NORM: return "output_norm.weight";
    case G_OUT: return "output.weight";
    default: return NULL;
    }
}

static bool is_norm(l2c_group g) {
    return g == G_ATTN_NORM || g == G_FFN_NORM || g == G_FINAL_NORM;
}

/* Tensors in the group and the shape of each (freq_cis: real and imag tables). */
static int group_shape(l2c_group g, const bl_llama2c_header *h, int *ndim, int64_t shape[2]) {
    int64_t dim = h->dim, hid = h->hidden_dim, kv = (int64_t)h->dim / h->n_heads * h->n_kv_heads;
    int64_t r = dim, c = 0; /* c == 0: a vector */
    int count = h->n_layers;
    switch (g) {
    case G_TOK: case G_OUT: r = h->vocab_size; c = dim; count = 1; break;
    case G_WQ: case G_WO: c = dim; break;
    case G_WK: case G_WV: r = kv; c = dim; break;
    case G_W1: case G_W3: r = hid; c = dim; break;
    case G_W2: c = hid; break;
    case G_FINAL_NORM: count = 1; break;
    case G_FREQ: r = h->seq_len; c = dim / h->n_heads / 2; count = 2; break;
    default: break;
    }
    if (g == G_OUT && h->shared_classifier) count = 0;
    *ndim = (c || g == G_FREQ) ? 2 : 1;
    shape[0] = r;
    shape[1] = c;
    return count;
}

/* Version 2 stores every weight matrix (not the norms) as int8 plus per-group scales. */
static bool is_quant(l2c_group g, const bl_llama2c_header *h) {
    return h->version == 2 && !is_norm(g) && g != G_FREQ;
}

/* Bytes one tensor of numel elements takes on disk; false on overflow or a partial group. */
static bool stored_bytes(l2c_group g, const bl_llama2c_header *h, int group_size, size_t numel,
                         size_t *out) {
    if (!is_quant(g, h)) return !bl_mul_overflows(numel, 4, out);
    size_t scales;
    if (numel % (size_t)group_size || bl_mul_overflows(numel / (size_t)group_size, 4, &scales))
        return false;
    return !bl_add_overflows(numel, scales, out);
}

/* A legacy header has no magic, so a header that fails here is most likely another kind of
 * file: the message says what the content looks like. */
static bl_status check_params(const char *path, const bl_llama2c_header *h, const uint8_t *data,
                              size_t size, bl_err *err) {
    const int v[7] = {h->dim, h->hidden_dim, h->n_layers, h->n_heads, h->n_kv_heads,
                      h->vocab_size, h->seq_len};
    static const char *const names[7] = {"dim", "hidden_dim", "n_layers", "n_heads",
                                         "n_kv_heads", "vocab_size", "seq_len"};
    char what[96] = "";
    if (h->version == 0 && err) bl_describe_content(data, size, size, what, sizeof what);
    const char *pre = h->version == 0 ? "not a llama2.c checkpoint: " : "";
    for (int i = 0; i < 7; i++)
        if (v[i] <= 0 || v[i] >= L2C_MAX_PARAM)
            return bl_fail(err, BL_ERR_FORMAT, "%s: %sheader field %s = %d is out of range%s%s%s",
                           path, pre, names[i], v[i], *what ? " (" : "", what, *what ? ")" : "");
    if (h->dim % h->n_heads || h->n_heads % h->n_kv_heads)
        return bl_fail(err, BL_ERR_FORMAT,
                       "%s: %sn_heads %d must divide dim %d and be a multiple of n_kv_heads %d",
                       path, pre, h->n_heads, h->dim, h->n_kv_heads);
    return BL_OK;
}

/* Parses the header at the start of the file into h; *data_off is where the weights begin. */
static bl_status read_header(const char *path, const uint8_t *data, size_t size,
                             bl_llama2c_header *h, int *group_size, size_t *data_off,
                             bl_err *err) {
    int32_t v[7];
    uint32_t magic = 0;
    memset(h, 0, sizeof *h);
    *group_size = 0;
    if (size >= 4) memcpy(&magic, data, 4);
    if (magic == L2C_MAGIC) {
        int32_t version = 0;
        if (size < 256)
            return bl_fail(err, BL_ERR_FORMAT, "%s: %zu bytes is too small for the 256-byte "
                           "header", path, size);
        memcpy(&version, data + 4, 4);
        if (version != 1 && version != 2)
            return bl_fail(err, BL_ERR_UNSUPPORTED, "%s: llama2.c export version %d not "
                           "supported", path, (int)version);
        memcpy(v, data + 8, sizeof v);
        uint8_t shared = data[36];
        if (shared > 1)
            return bl_fail(err, BL_ERR_FORMAT, "%s: shared_classifier flag is %u", path, shared);
        h->version = version;
        h->shared_classifier = shared;
        *data_off = 256;
        if (version == 2) {
            int32_t gs;
            memcpy(&gs, data + 37, 4);
            if (gs <= 0 || gs >= L2C_MAX_PARAM)
                return bl_fail(err, BL_ERR_FORMAT, "%s: group size %d out of range", path,
                               (int)gs);
            *group_size = gs;
        }
    } else {
        if (size < sizeof v)
            return bl_fail(err, BL_ERR_FORMAT, "%s: %zu bytes is too small for a llama2.c "
                           "header", path, size);
        memcpy(v, data, sizeof v);
        /* The legacy format signals an unshared classifier with a negative vocab_size. */
        h->shared_classifier = v[5] > 0;
        if (v[5] < 0 && v[5] > -L2C_MAX_PARAM) v[5] = -v[5];
        *data_off = sizeof v;
    }
    h->dim = v[0];
    h->hidden_dim = v[1];
    h->n_layers = v[2];
    h->n_heads = v[3];
    h->n_kv_heads = v[4];
    h->vocab_size = v[5];
    h->seq_len = v[6];
    return check_params(path, h, data, size, err);
}

/* Walks the layout: with set == NULL only sizes are summed (overflow-checked) into *file_end
 * and *deq_floats; otherwise tensors are added, dequantizing v2 weights into deq. */
static bl_status walk(const char *path, const bl_llama2c_header *h, int group_size,
                      const uint8_t *base, size_t off, float *deq, bl_tensor_set *set,
                      size_t *file_end, size_t *deq_floats, bl_err *err) {
    const l2c_group *order = h->version == 0 ? order_v0 : order_v12;
    size_t nd = 0;
    for (int gi = 0; order[gi] != G_END; gi++) {
        l2c_group g = order[gi];
        int ndim;
        int64_t shape[2];
        int count = group_shape(g, h, &ndim, shape);
        size_t numel = (size_t)shape[0], bytes;
        /* Each factor is below 2^20, so a 2-D numel fits; the byte counts are checked. */
        if (ndim == 2) numel *= (size_t)shape[1];
        if (!stored_bytes(g, h, group_size, numel, &bytes))
            return bl_fail(err, BL_ERR_FORMAT, "%s: tensor size overflows or is not a multiple "
                           "of the group size %d", path, group_size);
        bool quant = is_quant(g, h);
        for (int l = 0; l < count; l++) {
            if (set && g != G_FREQ) {
                bl_tensor t;
                memset(&t, 0, sizeof t);
                if (g == G_TOK || g == G_FINAL_NORM || g == G_OUT)
                    snprintf(t.name, sizeof t.name, "%s", group_name(g));
                else
                    snprintf(t.name, sizeof t.name, "blk.%d.%s", l, group_name(g));
                t.dtype = BL_DT_F32;
                t.ndim = ndim;
                t.shape[0] = shape[0];
                t.shape[1] = shape[1];
                t.nbytes = numel * 4;
                t.data = base + off;
                if (quant) { /* numel is a multiple of group_size (checked by stored_bytes) */
                    const int8_t *q = (const int8_t *)(base + off);
                    const uint8_t *scales = base + off + numel; /* may be unaligned */
                    float *dst = deq + nd;
                    for (size_t g0 = 0; g0 < numel; g0 += (size_t)group_size) {
                        float s;
                        memcpy(&s, scales + 4 * (g0 / (size_t)group_size), 4);
                        for (size_t i = g0; i < g0 + (size_t)group_size; i++)
                            dst[i] = (float)q[i] * s;
                    }
                    t.data = dst;
                }
                bl_status st = bl_tensor_set_add(set, &t, err);
                if (st != BL_OK) return st;
            }
            if (quant && bl_add_overflows(nd, numel, &nd))
                return bl_fail(err, BL_ERR_FORMAT, "%s: model size overflows", path);
            if (bl_add_overflows(off, bytes, &off))
                return bl_fail(err, BL_ERR_FORMAT, "%s: model size overflows", path);
        }
    }
    *file_end = off;
    *deq_floats = nd;
    return BL_OK;
}

/* Restores the set to the state before a failed open. */
static void set_rollback(bl_tensor_set *s, int n0, int maps0, int owned0) {
    s->n = n0;
    while (s->n_maps > maps0) bl_mmap_close(&s->maps[--s->n_maps]);
    while (s->n_owned > owned0) free(s->owned[--s->n_owned]);
}

bl_status bl_llama2c_parse(const char *path, const uint8_t *data, size_t size,
                           bl_llama2c_header *hdr, bl_tensor_set *set, bl_err *err) {
    if (!path || !set || (!data && size)) return bl_fail(err, BL_ERR_ARG, "llama2c: NULL argument");
    bl_llama2c_header h;
    int n0 = set->n, maps0 = set->n_maps, owned0 = set->n_owned, gs;
    size_t off = 0, end = 0, nq = 0;
    float *deq = NULL;
    bl_status st = read_header(path, data, size, &h, &gs, &off, err);
    if (st == BL_OK) st = walk(path, &h, gs, data, off, NULL, NULL, &end, &nq, err);
    if (st == BL_OK && size < end)
        st = bl_fail(err, BL_ERR_FORMAT, "%s: file has %zu bytes but its llama2.c header (dim %d, "
                     "%d layers, vocab %d) implies %zu: truncated, or not a llama2.c checkpoint",
                     path, size, h.dim, h.n_layers, h.vocab_size, end);
    if (st == BL_OK && nq > 0 && !(deq = bl_malloc_array(nq, sizeof(float))))
        st = bl_fail(err, BL_ERR_NOMEM, "%s: cannot allocate %zu floats to dequantize", path, nq);
    if (st == BL_OK) st = bl_tensor_set_begin_file(set, path, err);
    if (st == BL_OK) st = walk(path, &h, gs, data, off, deq, set, &end, &nq, err);
    /* bl_tensor_set_own takes ownership even when it fails (it frees what it was given). */
    if (st == BL_OK && deq && (st = bl_tensor_set_own(set, deq, err)) != BL_OK) deq = NULL;
    if (st != BL_OK) {
        free(deq);
        set_rollback(set, n0, maps0, owned0);
        return st;
    }
    if (hdr) *hdr = h;
    return BL_OK;
}

bool bl_llama2c_header_valid(const uint8_t *head, size_t n) {
    bl_llama2c_header h;
    int gs;
    size_t off;
    return read_header("", head, n, &h, &gs, &off, NULL) == BL_OK;
}

bl_status bl_llama2c_open(const char *path, bl_llama2c_header *hdr, bl_tensor_set *set,
                          bl_err *err) {
    if (!path || !set) return bl_fail(err, BL_ERR_ARG, "llama2c: NULL argument");
    bl_mmap m;
    bl_status st = bl_mmap_open(&m, path, err);
    if (st != BL_OK) return st;
    int n0 = set->n, maps0 = set->n_maps, owned0 = set->n_owned;
    st = bl_llama2c_parse(path, m.data, m.size, hdr, set, err);
    if (st != BL_OK) {
        bl_mmap_close(&m);
        return st;
    }
    if ((st = bl_tensor_set_own_map(set, &m, err)) != BL_OK) set_rollback(set, n0, maps0, owned0);
    return st;
}
