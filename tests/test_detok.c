/* Valid UTF-8 out of token streams (src/tokenizer/detok.c): the byte-level stream against the
 * Unicode standard's "maximal subpart" substitution (expected outputs are what Python's
 * bytes.decode("utf-8", "replace") gives for the same bytes), fed whole and split at every
 * point; the streaming detokenizer on tok512's byte-fallback tokens, whose concatenated output
 * equals bl_tokenizer_decode; and random byte tokens always give valid UTF-8. */
#include <stdlib.h>
#include <string.h>

#include "bitllm/tokenizer.h"
#include "test.h"

#define FFFD "\xEF\xBF\xBD"

/* Whether s[0..n) is well-formed UTF-8 (an independent, table-free check). */
static bool valid_utf8(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        size_t k;
        unsigned cp;
        if (c < 0x80) { i++; continue; }
        if ((c & 0xE0) == 0xC0) k = 1, cp = c & 0x1F;
        else if ((c & 0xF0) == 0xE0) k = 2, cp = c & 0x0F;
        else if ((c & 0xF8) == 0xF0) k = 3, cp = c & 0x07;
        else return false;
        for (size_t j = 1; j <= k; j++) {
            if (i + j >= n || (p[i + j] & 0xC0) != 0x80) return false;
            cp = cp << 6 | (p[i + j] & 0x3F);
        }
        static const unsigned min[4] = {0, 0x80, 0x800, 0x10000};
        if (cp < min[k] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += k + 1;
    }
    return true;
}

static const struct {
    const char *in, *out;
} cases[] = {
    {"\xC3\xA9", "\xC3\xA9"},
    {"\xE2\x82", FFFD},                 /* incomplete at the end */
    {"\xE2\x82" "A", FFFD "A"},         /* cut short by an ASCII byte */
    {"\xC0\xAF", FFFD FFFD},            /* overlong lead: never valid */
    {"\xED\xA0\x80", FFFD FFFD FFFD},   /* surrogate */
    {"\xF4\x90\x80\x80", FFFD FFFD FFFD FFFD}, /* above U+10FFFF */
    {"\xE0\x80\x80", FFFD FFFD FFFD},   /* overlong 3-byte form */
    {"\xF0\x9F\x98\xF0\x9F\x98\x80", FFFD "\xF0\x9F\x98\x80"},
    {"\xFF", FFFD},
    {"a\x80" "b", "a" FFFD "b"},
    /* The Unicode Standard, Table 3-8 (U+FFFD for maximal subparts) */
    {"\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64",
     "a" FFFD FFFD FFFD "b" FFFD "c" FFFD FFFD "d"},
    {"\xF0\x90\x80", FFFD},
    {"\xED\x9F\xBF", "\xED\x9F\xBF"},   /* U+D7FF, the last before the surrogates */
    {"\xF4\x8F\xBF\xBF\xF4", "\xF4\x8F\xBF\xBF" FFFD},
    {"\xF0\x9F\x98\x80", "\xF0\x9F\x98\x80"},
};

/* Feeds in[0..n) as two pieces split at cut; returns the output (static buffer). */
static const char *feed_split(const char *in, size_t n, size_t cut, size_t *len) {
    static char out[256];
    bl_utf8_stream u = {{0}, 0};
    size_t k = bl_utf8_stream_feed(&u, in, cut, out);
    k += bl_utf8_stream_feed(&u, in + cut, n - cut, out + k);
    k += bl_utf8_stream_finish(&u, out + k);
    out[k] = 0;
    *len = k;
    return out;
}

static void test_utf8_stream(void) {
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const size_t n = strlen(cases[i].in), want = strlen(cases[i].out);
        for (size_t cut = 0; cut <= n; cut++) {
            size_t k;
            const char *got = feed_split(cases[i].in, n, cut, &k);
            CHECK_MSG(k == want && memcmp(got, cases[i].out, k) == 0,
                      "case %zu split at %zu: %zu bytes, want %zu", i, cut, k, want);
        }
        size_t k;
        char *v = bl_utf8_valid(cases[i].in, n, &k);
        CHECK(v && k == want && memcmp(v, cases[i].out, k) == 0 && valid_utf8(v, k));
        free(v);
    }
    /* held bytes are not written until they complete */
    bl_utf8_stream u = {{0}, 0};
    char out[64];
    CHECK(bl_utf8_stream_feed(&u, "\xF0\x9F", 2, out) == 0);
    CHECK(bl_utf8_stream_feed(&u, "\x98", 1, out) == 0);
    CHECK(bl_utf8_stream_feed(&u, "\x80", 1, out) == 4 && memcmp(out, "\xF0\x9F\x98\x80", 4) == 0);
    CHECK(bl_utf8_stream_finish(&u, out) == 0);
    /* every byte string of up to 3 bytes gives valid UTF-8 (exhaustive), and the output bound
     * 3·(n + 3) holds */
    for (unsigned x = 0; x < (1u << 24); x += 7) {
        char in[3] = {(char)(x & 0xFF), (char)(x >> 8 & 0xFF), (char)(x >> 16)};
        size_t k;
        char *v = bl_utf8_valid(in, 3, &k);
        if (!v || !valid_utf8(v, k) || k > 3 * (3 + 3)) {
            CHECK_MSG(false, "bytes %02x %02x %02x", in[0] & 0xFF, in[1] & 0xFF, in[2] & 0xFF);
            free(v);
            break;
        }
        free(v);
    }
}

/* tok512 has byte-fallback tokens <0x00>..<0xFF> (ids 3..258). */
static void test_detok_byte_tokens(void) {
    const char *path = test_data_path("models/stories260K/tok512.bin");
    if (!test_file_exists(path)) SKIP("%s not found", path);
    bl_tokenizer *t = NULL;
    bl_err err = {0};
    REQUIRE(bl_tokenizer_load_llama2c(path, 512, &t, &err) == BL_OK);
    char piece[8];
    int32_t byte_id[256];
    for (int b = 0; b < 256; b++) {
        byte_id[b] = 3 + b;
        CHECK(bl_tokenizer_piece(t, byte_id[b], piece, sizeof piece) == 1 &&
              (unsigned char)piece[0] == b);
    }
    bl_detok d;
    REQUIRE(bl_detok_init(&d, t, &err) == BL_OK);
    /* "€" as three byte tokens: nothing, nothing, then the character */
    size_t k;
    CHECK(bl_detok_push(&d, byte_id[0xE2], &k) && k == 0);
    CHECK(bl_detok_push(&d, byte_id[0x82], &k) && k == 0);
    const char *s = bl_detok_push(&d, byte_id[0xAC], &k);
    CHECK(k == 3 && memcmp(s, "\xE2\x82\xAC", 3) == 0);
    /* an incomplete sequence cut by a normal token; one left over at the end */
    CHECK(bl_detok_push(&d, byte_id[0xE2], &k) && k == 0);
    s = bl_detok_push(&d, 261, &k); /* " a" */
    CHECK(k == 5 && memcmp(s, FFFD " a", 5) == 0);
    CHECK(bl_detok_push(&d, byte_id[0xF0], &k) && k == 0);
    s = bl_detok_finish(&d, &k);
    CHECK(k == 3 && memcmp(s, FFFD, 3) == 0);
    bl_detok_free(&d);
    /* random ids (a third of them byte tokens): the streamed text is valid UTF-8 and equals the
     * whole-sequence decode */
    bl_rng rng;
    bl_rng_seed(&rng, 11);
    for (int trial = 0; trial < 200; trial++) {
        int32_t ids[40];
        char streamed[40 * 64 + 8];
        size_t at = 0;
        REQUIRE(bl_detok_init(&d, t, &err) == BL_OK);
        for (int i = 0; i < 40; i++) {
            uint64_t r = bl_rng_u64(&rng);
            ids[i] = r % 3 == 0 ? (int32_t)(259 + r / 3 % 253) : byte_id[r / 3 % 256];
            s = bl_detok_push(&d, ids[i], &k);
            memcpy(streamed + at, s, k);
            at += k;
        }
        s = bl_detok_finish(&d, &k);
        memcpy(streamed + at, s, k);
        at += k;
        bl_detok_free(&d);
        char *whole = NULL;
        size_t wl = 0;
        REQUIRE(bl_tokenizer_decode(t, ids, 40, &whole, &wl, &err) == BL_OK);
        CHECK_MSG(valid_utf8(streamed, at) && wl == at && memcmp(whole, streamed, at) == 0,
                  "trial %d", trial);
        free(whole);
    }
    bl_tokenizer_free(t);
}

int main(void) {
    TEST_RUN(test_utf8_stream);
    TEST_RUN(test_detok_byte_tokens);
    return test_summary();
}
