/* Checkpoint file layer: stories260K in every form, and safetensors (single, sharded, writer).
 * Real-data cases use stories260K from the shared folder; synthetic files are built here byte by
 * byte and then corrupted systematically (truncations, huge counts, bad offsets and types): every
 * corrupted file must fail with a message naming the file, and never crash. GGUF and llama2.c
 * synthetic files: test_io_gguf.c. */
#include "io_corpus.h"

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
    "{\"a\\u0000b\":{" T4 "}}", /* cJSON would read the name as "a" */
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

/* ---- strict JSON (bl_json_parse) --------------------------------------------------------- */

static void test_json_strict(void) {
    static const struct {
        const char *text;
        size_t len;  /* 0: strlen */
        long nul_at; /* -1: none */
        long bad_at; /* -1: parses; -2: refused anywhere */
    } cases[] = {
        {"{\"a\": \"x\"}  \n", 0, -1, -1},
        {"{\"a\": \"x\\u0000y\"}", 0, 8, 8},     /* \u0000: cJSON would keep "x" only */
        {"{\"a\": \"x\\\\u0000y\"}", 0, -1, -1}, /* \\u0000: a backslash, then text */
        {"{\"a\": \"x\\\\\\u0000\"}", 0, 10, 10}, /* \\\u0000: a backslash, then NUL */
        {"{\"a\": \"x\\u00001\"}", 0, 8, 8},
        {"{\"a\": \"x\\u0001\"}", 0, -1, -1},
        {"{\"a\": \"x\0y\"}", 12, 8, 8},             /* a raw 0 byte */
        {"{\"a\": 1} x", 0, -1, 9},                   /* a second value */
        {"{\"a\": 1}{}", 0, -1, 8},
        {"{\"a\": ", 0, -1, -2}, /* where cJSON says */
        {"\\u0000", 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *t = cases[i].text;
        size_t len = cases[i].len ? cases[i].len : strlen(t), at = 12345;
        size_t nul = bl_json_nul_at(t, len);
        CHECK_MSG(nul == (cases[i].nul_at < 0 ? SIZE_MAX : (size_t)cases[i].nul_at),
                  "case %zu: NUL at %zu", i, nul);
        cJSON *v = bl_json_parse(t, len, &at);
        if (cases[i].bad_at == -1) {
            CHECK_MSG(v != NULL, "case %zu: refused at %zu", i, at);
        } else {
            CHECK_MSG(!v && (cases[i].bad_at == -2 || at == (size_t)cases[i].bad_at),
                      "case %zu: at %zu", i, at);
            const char *why = bl_json_refusal(t, len, at);
            CHECK_MSG((strstr(why, "NUL") != NULL) == (cases[i].nul_at >= 0), "case %zu: %s", i,
                      why);
        }
        cJSON_Delete(v);
    }
    /* the escaped backslash stays text, byte for byte */
    cJSON *v = bl_json_parse("{\"a\": \"x\\\\u0000y\"}", 18, NULL);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(v, "a");
    CHECK(cJSON_IsString(a) && strcmp(a->valuestring, "x\\u0000y") == 0);
    cJSON_Delete(v);
}

int main(void) {
    if (!io_tmp_init("test_io")) return 1;
    TEST_RUN(test_stories_gguf);
    TEST_RUN(test_stories_bin);
    TEST_RUN(test_stories_hf);
    TEST_RUN(test_stories_gguf_truncated);
    TEST_RUN(test_writer_roundtrip);
    TEST_RUN(test_sharded);
    TEST_RUN(test_safetensors_corrupt);
    TEST_RUN(test_index_corrupt);
    TEST_RUN(test_json_strict);
    remove_tree(tmp_root);
    return test_summary();
}
