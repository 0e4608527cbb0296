/* Helpers of the checkpoint-file tests (test_io.c: stories260K and safetensors; test_io_gguf.c:
 * GGUF and llama2.c): byte buffers to build files with, a temporary directory per run, and the
 * corruption corpus (truncations, patched fields, random mutations) that every opener must
 * refuse with a message naming the file, never crashing. */
#ifndef BITLLM_TESTS_IO_CORPUS_H
#define BITLLM_TESTS_IO_CORPUS_H

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

static inline size_t b_put(buf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
    return b->n - n;
}
static inline size_t b_u8(buf *b, uint8_t v) { return b_put(b, &v, 1); }
static inline size_t b_u32(buf *b, uint32_t v) { return b_put(b, &v, 4); }
static inline size_t b_u64(buf *b, uint64_t v) { return b_put(b, &v, 8); }
static inline size_t b_f32(buf *b, float v) { return b_put(b, &v, 4); }
/* GGUF string; returns the offset of its u64 length field. */
static inline size_t b_gstr(buf *b, const char *s) {
    size_t at = b_u64(b, strlen(s));
    b_put(b, s, strlen(s));
    return at;
}
static inline void b_pad(buf *b, size_t align) {
    while (b->n % align) b_u8(b, 0);
}

static inline const char *tmp_path(const char *name) {
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", tmp_root, name);
    return p;
}

static inline void write_bytes(const char *path, const void *d, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (n && fwrite(d, 1, n, f) != n) abort();
    fclose(f);
}

static inline void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[1024];
        const int k = snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (k < 0 || (size_t)k >= sizeof p) continue; /* not a path this test wrote */
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) remove_tree(p);
        else unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static inline uint32_t name_hash(const char *s) {
    uint32_t h = 2166136261u;
    while (*s) h = (h ^ (uint8_t)*s++) * 16777619u;
    return h;
}

/* ---- openers for the corruption corpus -------------------------------------------------- */

typedef bl_status (*open_fn)(const char *path, bl_err *err);

static inline bl_status open_st(const char *path, bl_err *err) {
    bl_tensor_set s = {0};
    char *meta = NULL;
    bl_status st = bl_safetensors_open(path, &s, &meta, err);
    CHECK(st == BL_OK || (meta == NULL && s.n == 0 && s.n_maps == 0));
    free(meta);
    bl_tensor_set_free(&s);
    return st;
}

static inline bl_status open_hf(const char *dir, bl_err *err) {
    bl_tensor_set s = {0};
    bl_status st = bl_hf_open_tensors(dir, &s, err);
    CHECK(st == BL_OK || (s.n == 0 && s.n_maps == 0));
    bl_tensor_set_free(&s);
    return st;
}

static inline bl_status open_gguf(const char *path, bl_err *err) {
    bl_gguf g;
    bl_status st = bl_gguf_open(path, &g, err);
    if (st == BL_OK) bl_gguf_close(&g);
    return st;
}

static inline bl_status open_l2c(const char *path, bl_err *err) {
    bl_tensor_set s = {0};
    bl_llama2c_header h;
    bl_status st = bl_llama2c_open(path, &h, &s, err);
    CHECK(st == BL_OK || (s.n == 0 && s.n_maps == 0 && s.n_owned == 0));
    bl_tensor_set_free(&s);
    return st;
}

/* Writes data to path, opens it and requires a failure whose message names path. */
static inline int expect_fail_at(open_fn f, const char *path, const char *file, const void *d,
                          size_t n, const char *what) {
    write_bytes(file, d, n);
    bl_err err = {0};
    bl_status st = f(path, &err);
    int ok = st != BL_OK && err.msg[0] && strstr(err.msg, path) != NULL;
    CHECK_MSG(ok, "%s: status %s, message '%s'", what, bl_status_name(st), err.msg);
    return ok;
}

static inline int expect_fail(open_fn f, const char *path, const void *d, size_t n, const char *what) {
    return expect_fail_at(f, path, path, d, n, what);
}

/* Same, but only requires "no crash, and a named error if it fails" (random mutations). */
static inline void try_open(open_fn f, const char *path, const void *d, size_t n) {
    write_bytes(path, d, n);
    bl_err err = {0};
    bl_status st = f(path, &err);
    if (st != BL_OK) CHECK_MSG(err.msg[0] && strstr(err.msg, path), "message '%s'", err.msg);
}

static inline void expect_fail_patch(open_fn f, const char *path, const buf *valid, size_t off,
                              const void *val, size_t len, const char *what) {
    uint8_t *c = malloc(valid->n);
    memcpy(c, valid->p, valid->n);
    memcpy(c + off, val, len);
    char w[160];
    snprintf(w, sizeof w, "%s (byte %zu)", what, off);
    expect_fail(f, path, c, valid->n, w);
    free(c);
}

static inline void patch_u32(open_fn f, const char *path, const buf *v, size_t off, uint32_t x,
                      const char *what) {
    expect_fail_patch(f, path, v, off, &x, 4, what);
}

static inline void patch_u64(open_fn f, const char *path, const buf *v, size_t off, uint64_t x,
                      const char *what) {
    expect_fail_patch(f, path, v, off, &x, 8, what);
}

/* Every prefix shorter than `dense` bytes, then a sample of the longer ones. */
static inline void truncations(open_fn f, const char *path, const buf *v, size_t dense) {
    size_t step = test_quick() ? 3 : 1;
    for (size_t k = 0; k < v->n; k += (k < dense ? step : 1 + v->n / 64)) {
        char w[64];
        snprintf(w, sizeof w, "truncated to %zu of %zu bytes", k, v->n);
        if (!expect_fail(f, path, v->p, k, w)) break;
    }
    expect_fail(f, path, v->p, v->n - 1, "last byte missing");
}

/* Random byte changes: must never crash; failures must name the file. */
static inline void random_mutations(open_fn f, const char *path, const buf *v, size_t region,
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


/* Makes tmp_root under $TMPDIR (e.g. a tmpfs) when set: the corruption corpus writes thousands
 * of small files. Returns 0 on failure. */
static inline int io_tmp_init(const char *tag) {
    const char *td = getenv("TMPDIR");
    snprintf(tmp_root, sizeof tmp_root, "%s/bitllm_%s_XXXXXX", td && *td ? td : "/tmp", tag);
    if (!mkdtemp(tmp_root)) {
        perror("mkdtemp");
        return 0;
    }
    return 1;
}

#endif
