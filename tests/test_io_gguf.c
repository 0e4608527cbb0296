/* Checkpoint file layer: GGUF and llama2.c .bin files built here byte by byte (every version and
 * layout variant the readers accept), then corrupted systematically (truncations, huge counts,
 * bad offsets and types): every corrupted file must fail with a message naming the file, and
 * never crash. */
#include "io_corpus.h"

/* ---- GGUF ------------------------------------------------------------------------------- */

typedef struct {
    size_t n_tensors, n_kv, align_val, dup_key, dup_name, q8_ne0;
    size_t strlens[64], arr_ns[8], arr_types[8], val_types[32];
    size_t ndims[8], ne0[8], ne1[8], types[8], offsets[8];
    int n_strlens, n_arr, n_val, n_t;
    size_t header_end;
} gguf_marks;

typedef struct {
    const char *name;
    uint32_t type;
    uint32_t nd;
    uint64_t ne[2];
    size_t nbytes;
} gguf_tspec;

static const gguf_tspec gguf_tensors[] = {
    {"t.f32", 0, 2, {3, 2}, 24}, {"t.f16", 1, 1, {5, 0}, 10},
    {"t.b16", 30, 2, {1, 4}, 8}, {"t.q80", 8, 2, {64, 2}, 4 * 34},
};

static void gguf_tensor_bytes(int i, uint8_t *d) {
    if (gguf_tensors[i].type == 8) {
        for (int b = 0; b < 4; b++) {
            uint16_t h = bl_f32_to_f16(0.5f * (float)(b + 1));
            memcpy(d + 34 * b, &h, 2);
            for (int j = 0; j < 32; j++) d[34 * b + 2 + j] = (uint8_t)(int8_t)(j - 16 + b);
        }
        return;
    }
    for (size_t k = 0; k < gguf_tensors[i].nbytes; k++) d[k] = (uint8_t)(17 * i + 3 * k + 1);
}

/* A GGUF file with every value type; version 2 or 3; optionally a too-long tensor name. */
static void build_gguf(buf *b, gguf_marks *m, uint32_t version, int long_name) {
    memset(m, 0, sizeof *m);
    b->n = 0;
    b_put(b, "GGUF", 4);
    b_u32(b, version);
    m->n_tensors = b_u64(b, 4);
    m->n_kv = b_u64(b, 17);
#define KEY(k, t) (m->strlens[m->n_strlens++] = b_gstr(b, k), m->val_types[m->n_val++] = b_u32(b, t))
    KEY("general.architecture", 8);
    m->strlens[m->n_strlens++] = b_gstr(b, "llama");
    KEY("general.alignment", 4);
    m->align_val = b_u32(b, 64);
    uint8_t u8 = 200;
    int8_t i8 = -5;
    uint16_t u16 = 60000;
    int16_t i16 = -300;
    int32_t i32 = -70000;
    int64_t i64 = -((int64_t)1 << 40);
    double f64 = 2.25;
    KEY("k.u8", 0);
    b_put(b, &u8, 1);
    KEY("k.i8", 1);
    m->dup_key = m->strlens[m->n_strlens - 1] + 8 + 2; /* the 'i' of "k.i8" */
    b_put(b, &i8, 1);
    KEY("k.u16", 2);
    b_put(b, &u16, 2);
    KEY("k.i16", 3);
    b_put(b, &i16, 2);
    KEY("k.u32", 4);
    b_u32(b, 4000000000u);
    KEY("k.i32", 5);
    b_put(b, &i32, 4);
    KEY("k.f32", 6);
    b_f32(b, 1.5f);
    KEY("k.bo", 7);
    b_u8(b, 1);
    KEY("k.u64", 10);
    b_u64(b, (uint64_t)1 << 40);
    KEY("k.i64", 11);
    b_put(b, &i64, 8);
    KEY("k.f64", 12);
    b_put(b, &f64, 8);
    KEY("tokenizer.ggml.tokens", 9);
    m->arr_types[m->n_arr] = b_u32(b, 8);
    m->arr_ns[m->n_arr++] = b_u64(b, 3);
    const char *toks[3] = {"<unk>", "a", "bc"};
    for (int i = 0; i < 3; i++) m->strlens[m->n_strlens++] = b_gstr(b, toks[i]);
    KEY("k.af32", 9);
    m->arr_types[m->n_arr] = b_u32(b, 6);
    m->arr_ns[m->n_arr++] = b_u64(b, 2);
    b_f32(b, 1.0f);
    b_f32(b, -2.5f);
    KEY("k.ai32", 9);
    m->arr_types[m->n_arr] = b_u32(b, 5);
    m->arr_ns[m->n_arr++] = b_u64(b, 3);
    int32_t ai[3] = {7, -8, 9};
    b_put(b, ai, 12);
    KEY("k.emp", 9);
    b_u32(b, 0);
    b_u64(b, 0);
#undef KEY
    size_t off = 0;
    for (int i = 0; i < 4; i++) {
        const gguf_tspec *t = &gguf_tensors[i];
        char lname[200];
        memset(lname, 'n', 150);
        lname[150] = 0;
        size_t at = m->strlens[m->n_strlens++] = b_gstr(b, long_name && i == 2 ? lname : t->name);
        if (i == 1) m->dup_name = at + 8 + 3; /* the "16" of "t.f16" */
        m->ndims[i] = b_u32(b, t->nd);
        m->ne0[i] = b_u64(b, t->ne[0]);
        if (t->nd > 1) m->ne1[i] = b_u64(b, t->ne[1]);
        if (t->type == 8) m->q8_ne0 = m->ne0[i];
        m->types[i] = b_u32(b, t->type);
        m->offsets[i] = b_u64(b, off);
        off = (off + t->nbytes + 63) & ~(size_t)63;
    }
    m->n_t = 4;
    m->header_end = b->n;
    b_pad(b, 64);
    for (int i = 0; i < 4; i++) {
        uint8_t d[200];
        gguf_tensor_bytes(i, d);
        b_pad(b, 64);
        b_put(b, d, gguf_tensors[i].nbytes);
    }
}

static void test_gguf_synthetic(void) {
    buf b = {0};
    gguf_marks m;
    const char *p = tmp_path("syn.gguf");
    for (uint32_t ver = 2; ver <= 3; ver++) {
        build_gguf(&b, &m, ver, 0);
        write_bytes(p, b.p, b.n);
        bl_gguf g;
        bl_err err = {0};
        REQUIRE(bl_gguf_open(p, &g, &err) == BL_OK);
        CHECK(g.version == ver && g.n_kv == 17 && g.alignment == 64 && g.tensors.n == 4);
        int64_t iv = 0;
        double fv = 0;
        bool bv = false;
        bl_str sv;
        CHECK(bl_gguf_get_int(&g, "k.u8", &iv) && iv == 200);
        CHECK(bl_gguf_get_int(&g, "k.i8", &iv) && iv == -5);
        CHECK(bl_gguf_get_int(&g, "k.u16", &iv) && iv == 60000);
        CHECK(bl_gguf_get_int(&g, "k.i16", &iv) && iv == -300);
        CHECK(bl_gguf_get_int(&g, "k.u32", &iv) && iv == 4000000000LL);
        CHECK(bl_gguf_get_int(&g, "k.i32", &iv) && iv == -70000);
        CHECK(bl_gguf_get_int(&g, "k.u64", &iv) && iv == (int64_t)1 << 40);
        CHECK(bl_gguf_get_int(&g, "k.i64", &iv) && iv == -((int64_t)1 << 40));
        CHECK(!bl_gguf_get_int(&g, "k.f32", &iv) && !bl_gguf_get_int(&g, "missing", &iv));
        CHECK(bl_gguf_get_float(&g, "k.f32", &fv) && fv == 1.5);
        CHECK(bl_gguf_get_float(&g, "k.f64", &fv) && fv == 2.25);
        CHECK(bl_gguf_get_float(&g, "k.i32", &fv) && fv == -70000.0);
        CHECK(bl_gguf_get_bool(&g, "k.bo", &bv) && bv);
        CHECK(!bl_gguf_get_bool(&g, "k.u8", &bv) && !bl_gguf_get_str(&g, "k.u8", &sv));
        CHECK(bl_gguf_get_str(&g, "general.architecture", &sv) && sv.len == 5 &&
              !memcmp(sv.ptr, "llama", 5));
        const bl_gguf_kv *tk = bl_gguf_find(&g, "tokenizer.ggml.tokens");
        CHECK(tk && tk->v.arr.n == 3 && tk->v.arr.strs && tk->v.arr.strs[2].len == 2 &&
              !memcmp(tk->v.arr.strs[2].ptr, "bc", 2));
        const bl_gguf_kv *af = bl_gguf_find(&g, "k.af32"), *ai = bl_gguf_find(&g, "k.ai32");
        CHECK(af && bl_gguf_arr_float(af, 1) == -2.5 && isnan(bl_gguf_arr_float(af, 2)));
        CHECK(ai && bl_gguf_arr_int(ai, 1) == -8 && bl_gguf_arr_float(ai, 2) == 9.0);
        CHECK(isnan(bl_gguf_arr_float(tk, 0)) && bl_gguf_arr_int(tk, 0) == 0);
        const bl_gguf_kv *em = bl_gguf_find(&g, "k.emp");
        CHECK(em && em->v.arr.n == 0);
        for (int i = 0; i < 4; i++) {
            const gguf_tspec *ts = &gguf_tensors[i];
            const bl_tensor *t = bl_tensor_set_find(&g.tensors, ts->name);
            uint8_t want[200];
            gguf_tensor_bytes(i, want);
            REQUIRE(t);
            CHECK(t->ndim == (int)ts->nd && t->shape[t->ndim - 1] == (int64_t)ts->ne[0] &&
                  (ts->nd == 1 || t->shape[0] == (int64_t)ts->ne[1]));
            CHECK(t->nbytes == ts->nbytes && !memcmp(t->data, want, ts->nbytes));
            CHECK(((uintptr_t)t->data - (uintptr_t)g.tensors.maps[0].data) % 64 == 0);
        }
        const bl_tensor *q = bl_tensor_set_find(&g.tensors, "t.q80");
        float *f = NULL;
        CHECK(q->dtype == BL_DT_Q8_0 && q->shape[0] == 2 && q->shape[1] == 64);
        REQUIRE(bl_tensor_to_f32(q, &f, &err) == BL_OK);
        int bad = 0;
        for (int i = 0; i < 128; i++)
            bad += f[i] != 0.5f * (float)(i / 32 + 1) * (float)(i % 32 - 16 + i / 32);
        CHECK(bad == 0);
        free(f);
        const bl_tensor *h = bl_tensor_set_find(&g.tensors, "t.b16");
        CHECK(h->dtype == BL_DT_BF16 && h->shape[0] == 4 && h->shape[1] == 1);
        bl_gguf_close(&g);
    }
    free(b.p);
}

static void test_gguf_corrupt(void) {
    buf b = {0};
    gguf_marks m;
    const char *p = tmp_path("bad.gguf");
    build_gguf(&b, &m, 3, 1);
    expect_fail(open_gguf, p, b.p, b.n, "tensor name of 150 bytes");
    build_gguf(&b, &m, 3, 0);
    expect_fail_patch(open_gguf, p, &b, 0, "GGUG", 4, "magic");
    uint32_t versions[] = {0, 1, 4, 0x03000000, UINT32_MAX};
    for (int i = 0; i < 5; i++) patch_u32(open_gguf, p, &b, 4, versions[i], "version");
    uint64_t huge[] = {(uint64_t)1 << 63, UINT64_MAX, (uint64_t)1 << 40, (uint64_t)1 << 62, b.n};
    for (int i = 0; i < 5; i++) {
        patch_u64(open_gguf, p, &b, m.n_tensors, huge[i], "n_tensors");
        patch_u64(open_gguf, p, &b, m.n_kv, huge[i], "n_kv");
    }
    for (int s = 0; s < m.n_strlens; s++) {
        uint64_t lens[] = {(uint64_t)1 << 63, UINT64_MAX, b.n, (uint64_t)1 << 32};
        for (int i = 0; i < 4; i++) patch_u64(open_gguf, p, &b, m.strlens[s], lens[i], "strlen");
    }
    for (int a = 0; a < m.n_arr; a++) {
        uint64_t ns[] = {(uint64_t)1 << 63, UINT64_MAX, (uint64_t)1 << 62, ((uint64_t)1 << 61) + 1,
                         b.n};
        for (int i = 0; i < 5; i++) patch_u64(open_gguf, p, &b, m.arr_ns[a], ns[i], "array n");
        uint32_t ts[] = {9, 13, UINT32_MAX};
        for (int i = 0; i < 3; i++) patch_u32(open_gguf, p, &b, m.arr_types[a], ts[i], "arr type");
    }
    for (int v = 0; v < m.n_val; v++) {
        patch_u32(open_gguf, p, &b, m.val_types[v], 13, "value type");
        patch_u32(open_gguf, p, &b, m.val_types[v], UINT32_MAX, "value type");
    }
    uint32_t aligns[] = {0, 3, 48, 1u << 31};
    for (int i = 0; i < 4; i++) patch_u32(open_gguf, p, &b, m.align_val, aligns[i], "alignment");
    patch_u32(open_gguf, p, &b, m.val_types[1], 8, "alignment as string");
    expect_fail_patch(open_gguf, p, &b, m.dup_key, "u", 1, "duplicate key");
    expect_fail_patch(open_gguf, p, &b, m.dup_name, "32", 2, "duplicate tensor name");
    patch_u64(open_gguf, p, &b, m.q8_ne0, 48, "Q8_0 row not a multiple of 32");
    for (int t = 0; t < m.n_t; t++) {
        patch_u32(open_gguf, p, &b, m.ndims[t], 5, "n_dims");
        patch_u32(open_gguf, p, &b, m.ndims[t], UINT32_MAX, "n_dims");
        uint64_t nes[] = {(uint64_t)1 << 63, UINT64_MAX, (uint64_t)1 << 40};
        for (int i = 0; i < 3; i++) patch_u64(open_gguf, p, &b, m.ne0[t], nes[i], "ne[0]");
        uint32_t types[] = {2, 12, 39, UINT32_MAX};
        for (int i = 0; i < 4; i++) patch_u32(open_gguf, p, &b, m.types[t], types[i], "type");
        uint64_t offs[] = {1, 32, UINT64_MAX, (uint64_t)1 << 63, (b.n + 63) & ~(size_t)63};
        for (int i = 0; i < 5; i++) patch_u64(open_gguf, p, &b, m.offsets[t], offs[i], "offset");
    }
    /* ne[0] * ne[1] overflowing 64 bits. */
    uint8_t *c = malloc(b.n);
    memcpy(c, b.p, b.n);
    uint64_t big = (uint64_t)1 << 32;
    memcpy(c + m.ne0[0], &big, 8);
    memcpy(c + m.ne1[0], &big, 8);
    expect_fail(open_gguf, p, c, b.n, "ne product overflow");
    free(c);
    truncations(open_gguf, p, &b, m.header_end + 64);
    random_mutations(open_gguf, p, &b, m.header_end, 2);
    free(b.p);
}

/* ---- llama2.c --------------------------------------------------------------------------- */

typedef struct {
    int dim, hid, L, nh, nkv, vocab, seq, version, gs;
    bool shared;
} l2c_cfg;

enum { R_DIM, R_HID, R_KV, R_VOCAB, R_SEQ, R_HS2, R_ONE };

typedef struct {
    const char *name; /* NULL: freq_cis, skipped by the reader */
    int per_layer, rows, cols; /* cols R_ONE: a vector */
} l2c_part;

static const l2c_part P_TOK = {"token_embd.weight", 0, R_VOCAB, R_DIM};
static const l2c_part P_AN = {"attn_norm.weight", 1, R_DIM, R_ONE};
static const l2c_part P_Q = {"attn_q.weight", 1, R_DIM, R_DIM};
static const l2c_part P_K = {"attn_k.weight", 1, R_KV, R_DIM};
static const l2c_part P_V = {"attn_v.weight", 1, R_KV, R_DIM};
static const l2c_part P_O = {"attn_output.weight", 1, R_DIM, R_DIM};
static const l2c_part P_FN = {"ffn_norm.weight", 1, R_DIM, R_ONE};
static const l2c_part P_W1 = {"ffn_gate.weight", 1, R_HID, R_DIM};
static const l2c_part P_W2 = {"ffn_down.weight", 1, R_DIM, R_HID};
static const l2c_part P_W3 = {"ffn_up.weight", 1, R_HID, R_DIM};
static const l2c_part P_NORM = {"output_norm.weight", 0, R_DIM, R_ONE};
static const l2c_part P_FREQ = {NULL, 0, R_SEQ, R_HS2};
static const l2c_part P_OUT = {"output.weight", 0, R_VOCAB, R_DIM};

static int l2c_size(const l2c_cfg *c, int code) {
    switch (code) {
    case R_DIM: return c->dim;
    case R_HID: return c->hid;
    case R_KV: return c->dim / c->nh * c->nkv;
    case R_VOCAB: return c->vocab;
    case R_SEQ: return c->seq;
    case R_HS2: return c->dim / c->nh / 2;
    default: return 1;
    }
}

static float l2c_value(const char *name, size_t i) {
    return (float)((name_hash(name) + (uint32_t)i * 2654435761u) % 2001) / 512.0f - 2.0f;
}

static int8_t l2c_q(const char *name, size_t i) {
    return (int8_t)((name_hash(name) + (uint32_t)i * 40503u) % 255 - 127);
}

/* Visits the file's parts in order; emit writes (b != NULL) or checks (s != NULL) one tensor. */
static void l2c_walk(const l2c_cfg *c, buf *b, const bl_tensor_set *s) {
    const l2c_part *v0[] = {&P_TOK, &P_AN, &P_Q, &P_K, &P_V, &P_O, &P_FN, &P_W1, &P_W2,
                            &P_W3, &P_NORM, &P_FREQ, &P_FREQ, &P_OUT};
    const l2c_part *v12[] = {&P_AN, &P_FN, &P_NORM, &P_TOK, &P_Q, &P_K, &P_V,
                             &P_O, &P_W1, &P_W2, &P_W3, &P_OUT};
    const l2c_part **parts = c->version ? v12 : v0;
    int np = c->version ? 12 : 14;
    for (int k = 0; k < np; k++) {
        const l2c_part *pt = parts[k];
        if (pt == &P_OUT && c->shared) continue;
        size_t rows = (size_t)l2c_size(c, pt->rows), cols = (size_t)l2c_size(c, pt->cols);
        size_t numel = rows * cols;
        bool quant = c->version == 2 && pt->cols != R_ONE;
        for (int l = 0; l < (pt->per_layer ? c->L : 1); l++) {
            char name[128];
            if (!pt->name) snprintf(name, sizeof name, "freq%d", k);
            else if (pt->per_layer) snprintf(name, sizeof name, "blk.%d.%s", l, pt->name);
            else snprintf(name, sizeof name, "%s", pt->name);
            if (b) {
                for (size_t i = 0; i < numel; i++) {
                    if (quant) b_u8(b, (uint8_t)l2c_q(name, i));
                    else b_f32(b, l2c_value(name, i));
                }
                for (size_t g = 0; quant && g < numel / (size_t)c->gs; g++)
                    b_f32(b, (float)(g + 1) / 64.0f);
                continue;
            }
            if (!pt->name) continue;
            const bl_tensor *t = bl_tensor_set_find(s, name);
            CHECK_MSG(t && t->dtype == BL_DT_F32 && t->nbytes == numel * 4 &&
                          t->shape[0] == (int64_t)rows &&
                          (pt->cols == R_ONE ? t->ndim == 1 : t->ndim == 2 &&
                                                                  t->shape[1] == (int64_t)cols),
                      "v%d tensor %s", c->version, name);
            if (!t || t->nbytes != numel * 4) continue;
            int bad = 0;
            for (size_t i = 0; i < numel; i++) {
                float want = quant ? (float)l2c_q(name, i) * (float)(i / (size_t)c->gs + 1) / 64.0f
                                   : l2c_value(name, i);
                float got;
                memcpy(&got, (const uint8_t *)t->data + 4 * i, 4);
                bad += got != want;
            }
            CHECK_MSG(bad == 0, "v%d tensor %s: %d values differ", c->version, name, bad);
        }
    }
}

static void build_l2c(buf *b, const l2c_cfg *c) {
    b->n = 0;
    int32_t v[7] = {c->dim, c->hid, c->L, c->nh, c->nkv, c->shared ? c->vocab : -c->vocab, c->seq};
    if (c->version == 0) {
        b_put(b, v, sizeof v);
    } else {
        v[5] = c->vocab;
        b_u32(b, 0x616b3432u);
        b_u32(b, (uint32_t)c->version);
        b_put(b, v, sizeof v);
        b_u8(b, c->shared);
        if (c->version == 2) b_u32(b, (uint32_t)c->gs);
        while (b->n < 256) b_u8(b, 0);
    }
    l2c_walk(c, b, NULL);
}

static const l2c_cfg l2c_cfgs[3] = {
    {8, 12, 2, 2, 1, 16, 4, 0, 0, false},
    {8, 12, 2, 2, 1, 16, 4, 1, 0, true},
    {8, 12, 2, 2, 1, 16, 4, 2, 4, false},
};

static void test_llama2c_synthetic(void) {
    buf b = {0};
    const char *p = tmp_path("syn.bin");
    for (int k = 0; k < 3; k++) {
        const l2c_cfg *c = &l2c_cfgs[k];
        build_l2c(&b, c);
        if (k == 0) b_put(&b, "tail", 4); /* trailing bytes after the weights are allowed */
        write_bytes(p, b.p, b.n);
        bl_tensor_set s = {0};
        bl_llama2c_header h;
        bl_err err = {0};
        CHECK_MSG(bl_llama2c_open(p, &h, &s, &err) == BL_OK, "v%d: %s", c->version, err.msg);
        CHECK(h.version == c->version && h.shared_classifier == c->shared && h.dim == 8 &&
              h.hidden_dim == 12 && h.n_layers == 2 && h.n_heads == 2 && h.n_kv_heads == 1 &&
              h.vocab_size == 16 && h.seq_len == 4);
        CHECK(s.n == 2 + 9 * 2 + (c->shared ? 0 : 1));
        CHECK(s.n_owned == (c->version == 2));
        l2c_walk(c, NULL, &s);
        bl_tensor_set_free(&s);
    }
    free(b.p);
}

static void test_llama2c_corrupt(void) {
    buf b = {0};
    const char *p = tmp_path("bad.bin");
    const int32_t bad_vals[] = {0, -1, 1 << 20, (1 << 20) - 2, 1 << 19, INT32_MAX, INT32_MIN};
    for (int k = 0; k < 3; k++) {
        const l2c_cfg *c = &l2c_cfgs[k];
        build_l2c(&b, c);
        size_t pbase = c->version ? 8 : 0;
        for (int f = 0; f < 7; f++)
            for (int i = 0; i < 7; i++) {
                /* A negative vocab is a valid legacy header (smaller model, unshared output). */
                if (c->version == 0 && f == 5 && bad_vals[i] == -1) continue;
                /* Versioned files have no freq_cis table, so a large seq_len is valid there. */
                if (c->version && f == 6 && bad_vals[i] > 0 && bad_vals[i] < (1 << 20)) continue;
                patch_u32(open_l2c, p, &b, pbase + 4 * (size_t)f, (uint32_t)bad_vals[i], "param");
            }
        patch_u32(open_l2c, p, &b, pbase + 12, 3, "n_heads not dividing dim");
        patch_u32(open_l2c, p, &b, pbase + 16, 3, "n_kv_heads not dividing n_heads");
        if (c->version) {
            const int32_t vers[] = {0, -1, 3, INT32_MAX};
            for (int i = 0; i < 4; i++) patch_u32(open_l2c, p, &b, 4, (uint32_t)vers[i], "version");
            expect_fail_patch(open_l2c, p, &b, 36, "\x02", 1, "shared flag 2");
        }
        if (c->version == 1) expect_fail_patch(open_l2c, p, &b, 36, "\0", 1, "unshared, no output");
        if (c->version == 2) {
            const int32_t gss[] = {0, -1, 3, 5, INT32_MAX, 1 << 20};
            for (int i = 0; i < 6; i++) patch_u32(open_l2c, p, &b, 37, (uint32_t)gss[i], "gs");
        }
        truncations(open_l2c, p, &b, c->version ? 256 + 64 : 28 + 64);
        random_mutations(open_l2c, p, &b, c->version ? 41 : 28, 10 + (uint64_t)k);
    }
    free(b.p);
}

int main(void) {
    if (!io_tmp_init("test_io_gguf")) return 1;
    TEST_RUN(test_gguf_synthetic);
    TEST_RUN(test_gguf_corrupt);
    TEST_RUN(test_llama2c_synthetic);
    TEST_RUN(test_llama2c_corrupt);
    remove_tree(tmp_root);
    return test_summary();
}
