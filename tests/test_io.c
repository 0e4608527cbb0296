/* Checkpoint file layer: safetensors (single, sharded, writer), GGUF, llama2.c .bin.
 * Real-data cases use stories260K from the shared folder; synthetic files are built here byte by
 * byte and then corrupted systematically (truncations, huge counts, bad offsets and types): every
 * corrupted file must fail with a message naming the file, and never crash. */
#include "test.h"

#include "bitllm/io.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp_root[256];

/* ---- small helpers ---------------------------------------------------------------------- */

typedef struct {
    uint8_t *p;
    size_t n, cap;
} buf;

static size_t b_put(buf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
    return b->n - n;
}
static size_t b_u8(buf *b, uint8_t v) { return b_put(b, &v, 1); }
static size_t b_u32(buf *b, uint32_t v) { return b_put(b, &v, 4); }
static size_t b_u64(buf *b, uint64_t v) { return b_put(b, &v, 8); }
static size_t b_f32(buf *b, float v) { return b_put(b, &v, 4); }
/* GGUF string; returns the offset of its u64 length field. */
static size_t b_gstr(buf *b, const char *s) {
    size_t at = b_u64(b, strlen(s));
    b_put(b, s, strlen(s));
    return at;
}
static void b_pad(buf *b, size_t align) {
    while (b->n % align) b_u8(b, 0);
}

static const char *tmp_path(const char *name) {
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", tmp_root, name);
    return p;
}

static void write_bytes(const char *path, const void *d, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (n && fwrite(d, 1, n, f) != n) abort();
    fclose(f);
}

static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) remove_tree(p);
        else unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static uint32_t name_hash(const char *s) {
    uint32_t h = 2166136261u;
    while (*s) h = (h ^ (uint8_t)*s++) * 16777619u;
    return h;
}

/* ---- openers for the corruption corpus -------------------------------------------------- */

typedef bl_status (*open_fn)(const char *path, bl_err *err);

static bl_status open_st(const char *path, bl_err *err) {
    bl_tensor_set s = {0};
    char *meta = NULL;
    bl_status st = bl_safetensors_open(path, &s, &meta, err);
    CHECK(st == BL_OK || (meta == NULL && s.n == 0 && s.n_maps == 0));
    free(meta);
    bl_tensor_set_free(&s);
    return st;
}

static bl_status open_hf(const char *dir, bl_err *err) {
    bl_tensor_set s = {0};
    bl_status st = bl_hf_open_tensors(dir, &s, err);
    CHECK(st == BL_OK || (s.n == 0 && s.n_maps == 0));
    bl_tensor_set_free(&s);
    return st;
}

static bl_status open_gguf(const char *path, bl_err *err) {
    bl_gguf g;
    bl_status st = bl_gguf_open(path, &g, err);
    if (st == BL_OK) bl_gguf_close(&g);
    return st;
}

static bl_status open_l2c(const char *path, bl_err *err) {
    bl_tensor_set s = {0};
    bl_llama2c_header h;
    bl_status st = bl_llama2c_open(path, &h, &s, err);
    CHECK(st == BL_OK || (s.n == 0 && s.n_maps == 0 && s.n_owned == 0));
    bl_tensor_set_free(&s);
    return st;
}

/* Writes data to path, opens it and requires a failure whose message names path. */
static int expect_fail_at(open_fn f, const char *path, const char *file, const void *d,
                          size_t n, const char *what) {
    write_bytes(file, d, n);
    bl_err err = {0};
    bl_status st = f(path, &err);
    int ok = st != BL_OK && err.msg[0] && strstr(err.msg, path) != NULL;
    CHECK_MSG(ok, "%s: status %s, message '%s'", what, bl_status_name(st), err.msg);
    return ok;
}

static int expect_fail(open_fn f, const char *path, const void *d, size_t n, const char *what) {
    return expect_fail_at(f, path, path, d, n, what);
}

/* Same, but only requires "no crash, and a named error if it fails" (random mutations). */
static void try_open(open_fn f, const char *path, const void *d, size_t n) {
    write_bytes(path, d, n);
    bl_err err = {0};
    bl_status st = f(path, &err);
    if (st != BL_OK) CHECK_MSG(err.msg[0] && strstr(err.msg, path), "message '%s'", err.msg);
}

static void expect_fail_patch(open_fn f, const char *path, const buf *valid, size_t off,
                              const void *val, size_t len, const char *what) {
    uint8_t *c = malloc(valid->n);
    memcpy(c, valid->p, valid->n);
    memcpy(c + off, val, len);
    char w[160];
    snprintf(w, sizeof w, "%s (byte %zu)", what, off);
    expect_fail(f, path, c, valid->n, w);
    free(c);
}

static void patch_u32(open_fn f, const char *path, const buf *v, size_t off, uint32_t x,
                      const char *what) {
    expect_fail_patch(f, path, v, off, &x, 4, what);
}

static void patch_u64(open_fn f, const char *path, const buf *v, size_t off, uint64_t x,
                      const char *what) {
    expect_fail_patch(f, path, v, off, &x, 8, what);
}

/* Every prefix shorter than `dense` bytes, then a sample of the longer ones. */
static void truncations(open_fn f, const char *path, const buf *v, size_t dense) {
    size_t step = test_quick() ? 3 : 1;
    for (size_t k = 0; k < v->n; k += (k < dense ? step : 1 + v->n / 64)) {
        char w[64];
        snprintf(w, sizeof w, "truncated to %zu of %zu bytes", k, v->n);
        if (!expect_fail(f, path, v->p, k, w)) break;
    }
    expect_fail(f, path, v->p, v->n - 1, "last byte missing");
}

/* Random byte changes: must never crash; failures must name the file. */
static void random_mutations(open_fn f, const char *path, const buf *v, size_t region,
                             uint64_t seed) {
    bl_rng r;
    bl_rng_seed(&r, seed);
    uint8_t *c = malloc(v->n);
    int iters = test_quick() ? 100 : 400;
    for (int it = 0; it < iters; it++) {
        memcpy(c, v->p, v->n);
        int flips = 1 + (int)(bl_rng_u64(&r) % 4);
        for (int k = 0; k < flips; k++) {
            size_t at = (size_t)(bl_rng_u64(&r) % (region < v->n ? region : v->n));
            uint64_t kind = bl_rng_u64(&r) % 3;
            c[at] = kind == 0 ? (uint8_t)bl_rng_u64(&r) : kind == 1 ? 0xff : c[at] ^ 0x80;
        }
        try_open(f, path, c, v->n);
    }
    free(c);
}

/* ---- stories260K ------------------------------------------------------------------------ */

static int open_stories_gguf(bl_gguf *g) {
    const char *p = test_data_path("models/stories260K/stories260K.gguf");
    if (!test_file_exists(p)) return 0;
    bl_err err = {0};
    bl_status st = bl_gguf_open(p, g, &err);
    CHECK_MSG(st == BL_OK, "%s", err.msg);
    return st == BL_OK;
}

static void test_stories_gguf(void) {
    bl_gguf g;
    if (!test_file_exists(test_data_path("models/stories260K/stories260K.gguf")))
        SKIP("stories260K.gguf not found");
    REQUIRE(open_stories_gguf(&g));
    CHECK(g.version == 3);
    CHECK(g.tensors.n == 48);
    CHECK(g.alignment == 32);
    bl_str arch;
    CHECK(bl_gguf_get_str(&g, "general.architecture", &arch) && arch.len == 5 &&
          memcmp(arch.ptr, "llama", 5) == 0);
    int64_t ctx = 0;
    CHECK(bl_gguf_get_int(&g, "llama.context_length", &ctx) && ctx == 2048);
    const bl_gguf_kv *tok = bl_gguf_find(&g, "tokenizer.ggml.tokens");
    CHECK(tok && tok->type == BL_GGUF_ARRAY && tok->v.arr.type == BL_GGUF_STRING &&
          tok->v.arr.n == 512 && tok->v.arr.strs);
    if (tok && tok->v.arr.strs)
        CHECK(tok->v.arr.strs[1].len == 3 && !memcmp(tok->v.arr.strs[1].ptr, "<s>", 3));
    const bl_gguf_kv *scores = bl_gguf_find(&g, "tokenizer.ggml.scores");
    CHECK(scores && scores->v.arr.type == BL_GGUF_F32 && scores->v.arr.n == 512 &&
          !isnan(bl_gguf_arr_float(scores, 511)));
    const bl_tensor *emb = bl_tensor_set_find(&g.tensors, "token_embd.weight");
    CHECK(emb && emb->dtype == BL_DT_F32 && emb->ndim == 2 && emb->shape[0] == 512 &&
          emb->shape[1] == 64 && emb->nbytes == 512 * 64 * 4);
    const bl_tensor *down = bl_tensor_set_find(&g.tensors, "blk.0.ffn_down.weight");
    CHECK(down && down->shape[0] == 64 && down->shape[1] == 172);
    bl_gguf_close(&g);
}

static void test_stories_bin(void) {
    const char *p = test_data_path("models/stories260K/stories260K.bin");
    if (!test_file_exists(p)) SKIP("stories260K.bin not found");
    bl_tensor_set s = {0};
    bl_llama2c_header h;
    bl_err err = {0};
    REQUIRE(bl_llama2c_open(p, &h, &s, &err) == BL_OK);
    CHECK(h.dim == 64 && h.hidden_dim == 172 && h.n_layers == 5 && h.n_heads == 8 &&
          h.n_kv_heads == 4 && h.vocab_size == 512 && h.seq_len == 512);
    CHECK(h.shared_classifier && h.version == 0);
    CHECK(s.n == 47 && !bl_tensor_set_find(&s, "output.weight"));
    const bl_tensor *wk = bl_tensor_set_find(&s, "blk.4.attn_k.weight");
    CHECK(wk && wk->shape[0] == 32 && wk->shape[1] == 64);
    bl_gguf g;
    if (open_stories_gguf(&g)) {
        int same = 0;
        for (int i = 0; i < s.n; i++) {
            const bl_tensor *a = &s.t[i], *b = bl_tensor_set_find(&g.tensors, a->name);
            int ok = b && a->ndim == b->ndim && a->nbytes == b->nbytes &&
                     !memcmp(a->shape, b->shape, sizeof a->shape) &&
                     !memcmp(a->data, b->data, a->nbytes);
            CHECK_MSG(ok, "tensor %s differs from the GGUF", a->name);
            same += ok;
        }
        CHECK(same == 47);
        bl_gguf_close(&g);
    }
    bl_tensor_set_free(&s);
}

static void test_stories_hf(void) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", test_data_path("models/stories260K/hf"));
    if (!test_file_exists(test_data_path("models/stories260K/hf/model.safetensors")))
        SKIP("hf/model.safetensors not found");
    bl_tensor_set s = {0};
    bl_err err = {0};
    REQUIRE(bl_hf_open_tensors(dir, &s, &err) == BL_OK);
    CHECK(s.n == 47); /* 47 tensors plus a __metadata__ entry; no lm_head (tied embedding) */
    const bl_tensor *down = bl_tensor_set_find(&s, "model.layers.0.mlp.down_proj.weight");
    REQUIRE(down);
    CHECK(down->dtype == BL_DT_F32 && down->ndim == 2 && down->shape[0] == 64 &&
          down->shape[1] == 172);
    bl_gguf g;
    if (open_stories_gguf(&g)) {
        const bl_tensor *gd = bl_tensor_set_find(&g.tensors, "blk.0.ffn_down.weight");
        const bl_tensor *ge = bl_tensor_set_find(&g.tensors, "token_embd.weight");
        const bl_tensor *he = bl_tensor_set_find(&s, "model.embed_tokens.weight");
        CHECK(gd && gd->nbytes == down->nbytes && !memcmp(gd->data, down->data, gd->nbytes));
        CHECK(ge && he && ge->nbytes == he->nbytes && !memcmp(ge->data, he->data, ge->nbytes));
        bl_gguf_close(&g);
    }
    bl_tensor_set_free(&s);
}

/* Truncations of the real GGUF's metadata region (strided) and a few of its data region. */
static void test_stories_gguf_truncated(void) {
    bl_gguf g;
    if (!test_file_exists(test_data_path("models/stories260K/stories260K.gguf")))
        SKIP("stories260K.gguf not found");
    REQUIRE(open_stories_gguf(&g));
    const uint8_t *base = g.tensors.maps[0].data;
    buf v = {0};
    b_put(&v, base, g.tensors.maps[0].size);
    size_t hdr = (size_t)((const uint8_t *)g.tensors.t[0].data - base);
    bl_gguf_close(&g);
    const char *p = tmp_path("stories_cut.gguf");
    size_t step = test_quick() ? 211 : 37;
    for (size_t k = 0; k < hdr; k += step) expect_fail(open_gguf, p, v.p, k, "stories cut");
    for (size_t k = hdr; k < v.n; k += v.n / 16) expect_fail(open_gguf, p, v.p, k, "stories cut");
    free(v.p);
}

/* ---- safetensors writer and reader ------------------------------------------------------ */

typedef struct {
    const char *name;
    bl_dtype dt;
    int ndim;
    int64_t shape[4];
    size_t nbytes;
} st_spec;

static const st_spec st_specs[] = {
    {"w.f32", BL_DT_F32, 2, {3, 5}, 60},      {"w.f16", BL_DT_F16, 1, {7}, 14},
    {"w.bf16", BL_DT_BF16, 3, {2, 2, 2}, 16}, {"w.u8", BL_DT_U8, 1, {3}, 3},
    {"w.i8", BL_DT_I8, 0, {0}, 1},            {"w.empty", BL_DT_F32, 2, {0, 4}, 0},
    {"w.i32", BL_DT_I32, 2, {2, 3}, 24},      {"w.i64", BL_DT_I64, 1, {1}, 8},
    {"w.f64", BL_DT_F64, 4, {2, 1, 1, 2}, 32},
};
#define N_ST_SPECS ((int)(sizeof st_specs / sizeof st_specs[0]))

static void spec_bytes(const st_spec *sp, uint8_t *d) {
    uint32_t h = name_hash(sp->name);
    for (size_t i = 0; i < sp->nbytes; i++) d[i] = (uint8_t)(h >> (i % 4 * 8)) + (uint8_t)i;
}

/* Writes the spec tensors (copy on odd ones, references on even ones) plus metadata. */
static bl_status write_st(const char *path, int first, int last, bl_err *err) {
    bl_st_writer *w;
    uint8_t data[N_ST_SPECS][64];
    bl_status st = bl_st_writer_new(&w, err);
    if (st) return st;
    for (int i = first; i < last && !st; i++) {
        spec_bytes(&st_specs[i], data[i]);
        st = bl_st_writer_add(w, st_specs[i].name, st_specs[i].dt, st_specs[i].ndim,
                              st_specs[i].shape, data[i], st_specs[i].nbytes, i % 2, err);
        if (i % 2) memset(data[i], 0xEE, sizeof data[i]); /* the copy must not see this */
    }
    if (!st) st = bl_st_writer_meta(w, "format", "pt", err);
    if (!st) st = bl_st_writer_meta(w, "note", "first", err);
    if (!st) st = bl_st_writer_meta(w, "note", "quote \" and \\ kept", err);
    if (!st) st = bl_st_writer_finish(w, path, err);
    bl_st_writer_free(w);
    return st;
}

static void check_st_tensors(const bl_tensor_set *s, int first, int last) {
    for (int i = first; i < last; i++) {
        const st_spec *sp = &st_specs[i];
        const bl_tensor *t = bl_tensor_set_find(s, sp->name);
        uint8_t want[64];
        spec_bytes(sp, want);
        CHECK_MSG(t && t->dtype == sp->dt && t->ndim == sp->ndim && t->nbytes == sp->nbytes &&
                      !memcmp(t->shape, sp->shape, (size_t)sp->ndim * 8) &&
                      !memcmp(t->data, want, sp->nbytes),
                  "tensor %s", sp->name);
    }
}

static void test_writer_roundtrip(void) {
    const char *p = tmp_path("rt.safetensors");
    bl_err err = {0};
    REQUIRE(write_st(p, 0, N_ST_SPECS, &err) == BL_OK);
    bl_tensor_set s = {0};
    char *meta = NULL;
    REQUIRE(bl_safetensors_open(p, &s, &meta, &err) == BL_OK);
    CHECK(s.n == N_ST_SPECS);
    for (int i = 0; i < s.n && i < N_ST_SPECS; i++) CHECK(!strcmp(s.t[i].name, st_specs[i].name));
    check_st_tensors(&s, 0, N_ST_SPECS);
    /* Header length is a multiple of 8 and the data region is packed in the order added. */
    uint64_t hlen;
    memcpy(&hlen, s.maps[0].data, 8);
    CHECK(hlen % 8 == 0);
    CHECK(s.maps[0].size == 8 + hlen + 158);
    CHECK((const uint8_t *)s.t[0].data == s.maps[0].data + 8 + hlen);
    cJSON *mj = meta ? cJSON_Parse(meta) : NULL;
    const cJSON *note = cJSON_GetObjectItemCaseSensitive(mj, "note");
    CHECK(cJSON_IsString(note) && !strcmp(note->valuestring, "quote \" and \\ kept"));
    CHECK(cJSON_GetArraySize(mj) == 2);
    cJSON_Delete(mj);
    free(meta);
    bl_tensor_set_free(&s);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", p, (long)getpid());
    CHECK(!test_file_exists(tmp));

    /* Argument errors. */
    bl_st_writer *w;
    REQUIRE(bl_st_writer_new(&w, &err) == BL_OK);
    float f[4] = {0};
    int64_t sh[5] = {2, 2, 1, 1, 1}, neg[1] = {-1};
    CHECK(bl_st_writer_add(w, "a", BL_DT_F32, 2, sh, f, 16, false, &err) == BL_OK);
    CHECK(bl_st_writer_add(w, "a", BL_DT_F32, 2, sh, f, 16, false, &err) == BL_ERR_ARG);
    CHECK(bl_st_writer_add(w, "b", BL_DT_F32, 2, sh, f, 12, false, &err) == BL_ERR_ARG);
    CHECK(bl_st_writer_add(w, "c", BL_DT_F32, 5, sh, f, 16, false, &err) == BL_ERR_ARG);
    CHECK(bl_st_writer_add(w, "d", BL_DT_F32, 1, neg, f, 0, false, &err) == BL_ERR_ARG);
    CHECK(bl_st_writer_add(w, "e", BL_DT_Q8_0, 1, sh, f, 34, false, &err) == BL_ERR_ARG);
    CHECK(bl_st_writer_add(w, "__metadata__", BL_DT_F32, 1, sh, f, 8, false, &err) ==
          BL_ERR_ARG);
    CHECK(bl_st_writer_add(w, "", BL_DT_F32, 1, sh, f, 8, false, &err) == BL_ERR_ARG);
    CHECK(bl_st_writer_finish(w, tmp_path("no/such/dir/x.safetensors"), &err) == BL_ERR_IO);
    CHECK(strstr(err.msg, "no/such/dir/x.safetensors") != NULL);
    bl_st_writer_free(w);
}

static void test_sharded(void) {
    char dir[600], p[700];
    snprintf(dir, sizeof dir, "%s/sharded", tmp_root);
    REQUIRE(mkdir(dir, 0755) == 0);
    bl_err err = {0};
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", dir);
    REQUIRE(write_st(p, 0, 4, &err) == BL_OK);
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
    REQUIRE(write_st(p, 4, N_ST_SPECS, &err) == BL_OK);
    cJSON *root = cJSON_CreateObject(), *wm = cJSON_AddObjectToObject(root, "weight_map");
    cJSON_AddObjectToObject(root, "metadata");
    for (int i = 0; i < N_ST_SPECS; i++)
        cJSON_AddStringToObject(wm, st_specs[i].name, i < 4 ? "model-00001-of-00002.safetensors"
                                                            : "model-00002-of-00002.safetensors");
    char *js = cJSON_Print(root);
    cJSON_Delete(root);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    write_bytes(p, js, strlen(js));
    cJSON_free(js);
    bl_tensor_set s = {0};
    CHECK_MSG(bl_hf_open_tensors(dir, &s, &err) == BL_OK, "%s", err.msg);
    CHECK(s.n == N_ST_SPECS && s.n_maps == 2);
    check_st_tensors(&s, 0, N_ST_SPECS);
    /* A second load into the same set must fail on the duplicate names and leave it intact. */
    CHECK(bl_hf_open_tensors(dir, &s, &err) == BL_ERR_FORMAT && strstr(err.msg, dir));
    CHECK(s.n == N_ST_SPECS && s.n_maps == 2);
    bl_tensor_set_free(&s);
    /* A directory holding only model.safetensors, and a directory with nothing. */
    snprintf(p, sizeof p, "%s/single", tmp_root);
    REQUIRE(mkdir(p, 0755) == 0);
    bl_err e2 = {0};
    CHECK(open_hf(p, &e2) == BL_ERR_IO && strstr(e2.msg, p));
    char sp[800];
    snprintf(sp, sizeof sp, "%s/model.safetensors", p);
    REQUIRE(write_st(sp, 0, N_ST_SPECS, &err) == BL_OK);
    CHECK(bl_hf_open_tensors(p, &s, &err) == BL_OK && s.n == N_ST_SPECS);
    bl_tensor_set_free(&s);
}

/* A safetensors file with the given JSON header and data_len zero bytes of data. */
static void st_from_json(buf *b, const char *json, size_t data_len) {
    b->n = 0;
    b_u64(b, strlen(json));
    b_put(b, json, strlen(json));
    for (size_t i = 0; i < data_len; i++) b_u8(b, 0);
}

#define T4 "\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]"
static const char *const bad_st_headers[] = {
    "{", "[1,2]", "123", "\"x\"", "{\"a\":5}", "{\"a\":{}}",
    "{\"a\":{\"shape\":[4],\"data_offsets\":[0,16]}}",
    "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,16]}}",
    "{\"a\":{\"dtype\":\"F32\",\"shape\":[4]}}",
    "{\"a\":{\"dtype\":7,\"shape\":[4],\"data_offsets\":[0,16]}}",
    "{\"a\":{\"dtype\":\"Q4\",\"shape\":[4],\"data_offsets\":[0,16]}}",
    "{\"a\":{\"dtype\":\"Q8_0\",\"shape\":[32],\"data_offsets\":[0,34]}}",
    "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,16],\"data_offsets\":[0,16]}}",
    "{\"a\":{\"dtype\":\"U8\",\"shape\":[-16],\"data_offsets\":[0,16]}}",
    "{\"a\":{\"dtype\":\"U8\",\"shape\":[1.5],\"data_offsets\":[0,16]}}",
    "{\"a\":{\"dtype\":\"U8\",\"shape\":[\"16\"],\"data_offsets\":[0,16]}}",
    "{\"a\":{\"dtype\":\"U8\",\"shape\":[1e300],\"data_offsets\":[0,16]}}",
    "{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,4294967296],"
    "\"data_offsets\":[0,16]}}",
    "{\"a\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,16]}}",
    "{\"a\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,16]}}",
    "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0]}}",
    "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16,32]}}",
    "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[-16,0]}}",
    "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,0]}}",
    "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,1e20]}}",
    "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,32]}}",
    "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,12]}}",
    "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[\"0\",16]}}",
    "{\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\":{" T4 "}}",
    "{\"\":{" T4 "}}",
    "{\"a\":{" T4 "},\"a\":{" T4 "}}",
    "{\"a\":{" T4 "},\"b\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[8,16]}}",
    "{\"__metadata__\":\"x\",\"a\":{" T4 "}}",
    "{\"__metadata__\":{},\"__metadata__\":{},\"a\":{" T4 "}}",
    "{\"a\":{" T4 "}}xyz",
    "{\"a\":{" T4 "}}\0   ",
};

static void test_safetensors_corrupt(void) {
    const char *p = tmp_path("bad.safetensors");
    buf b = {0};
    /* Controls: these small headers are valid, so the failures below are the intended ones. */
    const char *good[] = {"{}", "{\"a\":{" T4 "}}   ",
                          ("{\"s\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[0,4]},"
                           "\"z\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[16,16]}}")};
    for (int i = 0; i < 3; i++) {
        st_from_json(&b, good[i], 16);
        write_bytes(p, b.p, b.n);
        bl_err err = {0};
        CHECK_MSG(open_st(p, &err) == BL_OK, "control %d: %s", i, err.msg);
    }
    int n_bad = (int)(sizeof bad_st_headers / sizeof bad_st_headers[0]);
    for (int i = 0; i < n_bad; i++) {
        const char *j = bad_st_headers[i];
        size_t jl = strlen(j) + (i == n_bad - 1 ? 4 : 0); /* the last one has an embedded NUL */
        b.n = 0;
        b_u64(&b, jl);
        b_put(&b, j, jl);
        for (int k = 0; k < 16; k++) b_u8(&b, 0);
        char w[64];
        snprintf(w, sizeof w, "bad header #%d", i);
        expect_fail(open_st, p, b.p, b.n, w);
    }
    /* Header length field. */
    st_from_json(&b, "{\"a\":{" T4 "}}", 16);
    uint64_t lens[] = {0, 1, b.n - 7, b.n, (uint64_t)1 << 63, UINT64_MAX, 59};
    for (int i = 0; i < 7; i++) patch_u64(open_st, p, &b, 0, lens[i], "header length");
    /* A header length above the sanity limit, in a (sparse) file that is big enough for it. */
    uint64_t big = (uint64_t)200 << 20;
    memcpy(b.p, &big, 8);
    write_bytes(p, b.p, b.n);
    if (truncate(p, (off_t)(big + 16)) == 0) {
        bl_err err = {0};
        CHECK(open_st(p, &err) == BL_ERR_FORMAT && strstr(err.msg, p));
    }
    /* The writer's output: every header prefix, samples of the data, random mutations. */
    bl_err err = {0};
    REQUIRE(write_st(tmp_path("valid.safetensors"), 0, N_ST_SPECS, &err) == BL_OK);
    char *d;
    size_t n;
    REQUIRE(bl_read_file(tmp_path("valid.safetensors"), &d, &n, &err) == BL_OK);
    b.n = 0;
    b_put(&b, d, n);
    free(d);
    uint64_t hlen;
    memcpy(&hlen, b.p, 8);
    truncations(open_st, p, &b, 8 + hlen);
    random_mutations(open_st, p, &b, 8 + hlen, 1);
    free(b.p);
}

static void test_index_corrupt(void) {
    char dir[600], ip[700];
    snprintf(dir, sizeof dir, "%s/sharded", tmp_root);
    snprintf(ip, sizeof ip, "%s/model.safetensors.index.json", dir);
    char *d;
    size_t n;
    bl_err err = {0};
    if (bl_read_file(ip, &d, &n, &err) != BL_OK) SKIP("sharded directory not built");
    buf v = {0};
    b_put(&v, d, n);
    free(d);
    const char *S1 = "\"model-00001-of-00002.safetensors\"";
    char bad[12][400];
    snprintf(bad[0], 400, "[]");
    snprintf(bad[1], 400, "{}");
    snprintf(bad[2], 400, "{\"weight_map\":[]}");
    snprintf(bad[3], 400, "{\"weight_map\":{}}");
    snprintf(bad[4], 400, "{\"weight_map\":{\"w.f32\":5}}");
    snprintf(bad[5], 400, "{\"weight_map\":{\"w.f32\":\"nope.safetensors\"}}");
    snprintf(bad[6], 400, "{\"weight_map\":{\"w.f32\":\"../sharded/%s\"}}", S1 + 1);
    snprintf(bad[7], 400, "{\"weight_map\":{\"w.f32\":\"/etc/passwd\"}}");
    snprintf(bad[8], 400, "{\"weight_map\":{\"w.f32\":%s,\"w.zzz\":%s}}", S1, S1);
    snprintf(bad[9], 400, "{\"weight_map\":{\"w.f32\":\"..\"}}");
    snprintf(bad[10], 400, "{\"weight_map\":{\"w.f32\":\"\"}}");
    snprintf(bad[11], 400, "{\"weight_map\":{\"w.f32\":\"bad.safetensors\"}}");
    char badshard[800];
    snprintf(badshard, sizeof badshard, "%s/bad.safetensors", dir);
    write_bytes(badshard, "\x02\0\0\0\0\0\0\0[]", 10);
    for (int i = 0; i < 12; i++) {
        char w[32];
        snprintf(w, sizeof w, "bad index #%d", i);
        expect_fail_at(open_hf, dir, ip, bad[i], strlen(bad[i]), w);
    }
    /* Every strict prefix of the index is invalid JSON (it has no trailing whitespace). */
    while (v.n && (v.p[v.n - 1] == '\n' || v.p[v.n - 1] == ' ')) v.n--;
    for (size_t k = 0; k < v.n; k += test_quick() ? 7 : 1)
        if (!expect_fail_at(open_hf, dir, ip, v.p, k, "index prefix")) break;
    write_bytes(ip, v.p, v.n); /* restore */
    CHECK(open_hf(dir, &err) == BL_OK);
    free(v.p);
}

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
    /* $TMPDIR (e.g. a tmpfs) when set: the corruption corpus writes thousands of small files. */
    const char *td = getenv("TMPDIR");
    snprintf(tmp_root, sizeof tmp_root, "%s/bitllm_test_io_XXXXXX", td && *td ? td : "/tmp");
    if (!mkdtemp(tmp_root)) {
        perror("mkdtemp");
        return 1;
    }
    TEST_RUN(test_stories_gguf);
    TEST_RUN(test_stories_bin);
    TEST_RUN(test_stories_hf);
    TEST_RUN(test_stories_gguf_truncated);
    TEST_RUN(test_writer_roundtrip);
    TEST_RUN(test_sharded);
    TEST_RUN(test_safetensors_corrupt);
    TEST_RUN(test_index_corrupt);
    TEST_RUN(test_gguf_synthetic);
    TEST_RUN(test_gguf_corrupt);
    TEST_RUN(test_llama2c_synthetic);
    TEST_RUN(test_llama2c_corrupt);
    remove_tree(tmp_root);
    return test_summary();
}
