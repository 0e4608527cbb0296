/* The .npy reader and writer (src/io/npy.c): round trips, every header form NumPy writes, and
 * malformed images of every kind rejected with BL_ERR_FORMAT / BL_ERR_UNSUPPORTED and never read
 * out of bounds (the sanitizer build checks the latter; every image is an exact-size heap copy). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bitllm/io.h"
#include "test.h"

/* An image: magic, version, header (padded to 64 with spaces and '\n'), then `nbytes` of data
 * (bytes i = i). Returned as an exact-size heap buffer. */
static uint8_t *image(int major, const char *dict, size_t nbytes, size_t *len) {
    const size_t pre = major == 1 ? 10 : 12, dl = strlen(dict);
    const size_t hlen = (dl + 1 + pre + 63) / 64 * 64 - pre;
    *len = pre + hlen + nbytes;
    uint8_t *b = malloc(*len);
    memcpy(b, "\x93NUMPY", 6);
    b[6] = (uint8_t)major;
    b[7] = 0;
    for (size_t i = 0; i < pre - 8; i++) b[8 + i] = (uint8_t)(hlen >> (8 * i));
    memcpy(b + pre, dict, dl);
    memset(b + pre + dl, ' ', hlen - dl - 1);
    b[pre + hlen - 1] = '\n';
    for (size_t i = 0; i < nbytes; i++) b[pre + hlen + i] = (uint8_t)i;
    return b;
}

static bl_status parse(int major, const char *dict, size_t nbytes, bl_npy_header *h) {
    size_t len;
    uint8_t *b = image(major, dict, nbytes, &len);
    bl_err err = {0};
    bl_status s = bl_npy_parse(b, len, "test.npy", h, &err);
    if (s) CHECK_MSG(strstr(err.msg, "test.npy") != NULL, "message lacks the name: %s", err.msg);
    free(b);
    return s;
}

static void test_headers(void) {
    bl_npy_header h;
    CHECK(parse(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", 48, &h) == BL_OK);
    CHECK(h.dtype == BL_DT_F32 && h.ndim == 2 && h.shape[0] == 3 && h.shape[1] == 4 &&
          h.numel == 12 && !h.fortran_order && h.data_offset % 64 == 0 && h.nbytes == 48);
    /* key order, quotes, spacing and trailing commas vary between writers */
    CHECK(parse(2, "{\"shape\":(5,),\"fortran_order\":True,\"descr\":\"<f2\"}", 10, &h) == BL_OK);
    CHECK(h.dtype == BL_DT_F16 && h.ndim == 1 && h.shape[0] == 5 && h.fortran_order);
    CHECK(parse(3, "{'descr': '|f8', 'fortran_order': False, 'shape': (), }", 8, &h) == BL_OK);
    CHECK(h.dtype == BL_DT_F64 && h.ndim == 0 && h.numel == 1);
    CHECK(parse(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 7), }", 0, &h) == BL_OK);
    CHECK(h.numel == 0);
    CHECK(parse(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L), }", 24, &h) ==
          BL_OK); /* Python 2 */
    /* integers: the header says what they are; the data size follows the item size */
    CHECK(parse(1, "{'descr': '<i4', 'fortran_order': False, 'shape': (3, 4), }", 48, &h) == BL_OK);
    CHECK(h.kind == 'i' && h.itemsize == 4 && h.dtype == BL_DT_I32 && !strcmp(h.descr, "<i4") &&
          h.nbytes == 48);
    CHECK(parse(1, "{'descr': '<u2', 'fortran_order': False, 'shape': (7,), }", 14, &h) == BL_OK);
    CHECK(h.kind == 'u' && h.itemsize == 2 && h.dtype == BL_DT_COUNT && h.nbytes == 14);
    CHECK(parse(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (5,), }", 5, &h) == BL_OK);
    CHECK(h.kind == 'u' && h.itemsize == 1 && h.dtype == BL_DT_U8);
    CHECK(parse(1, "{'descr': '<f2', 'fortran_order': False, 'shape': (3,), }", 6, &h) == BL_OK);
    CHECK(h.kind == 'f' && h.itemsize == 2 && !strcmp(h.descr, "<f2"));
}

static void test_rejects(void) {
    bl_npy_header h;
    const char *good = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }";
    struct {
        const char *dict;
        size_t nbytes;
        bl_status want;
    } bad[] = {
        {good, 47, BL_ERR_FORMAT},                     /* one byte short */
        {good, 49, BL_ERR_FORMAT},                     /* trailing byte */
        {"{'descr': '>f4', 'fortran_order': False, 'shape': (3, 4), }", 48, BL_ERR_UNSUPPORTED},
        {"{'descr': '<c8', 'fortran_order': False, 'shape': (3, 4), }", 96, BL_ERR_UNSUPPORTED},
        {"{'descr': '<i3', 'fortran_order': False, 'shape': (3, 4), }", 36, BL_ERR_UNSUPPORTED},
        {"{'descr': '<i4', 'fortran_order': False, 'shape': (3, 4), }", 47, BL_ERR_FORMAT},
        {"{'descr': '<f4', 'fortran_order': 0, 'shape': (3, 4), }", 48, BL_ERR_FORMAT},
        {"{'descr': '<f4', 'shape': (3, 4), }", 48, BL_ERR_FORMAT},            /* missing key */
        {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (3, 4)}", 48,
         BL_ERR_FORMAT},                                                     /* repeated key */
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), 'x': 1}", 48, BL_ERR_FORMAT},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3, -4), }", 48, BL_ERR_FORMAT},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3 4), }", 48, BL_ERR_FORMAT},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': [3, 4], }", 48, BL_ERR_FORMAT},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), } x", 48, BL_ERR_FORMAT},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999, "
         "99999999999), }", 48, BL_ERR_FORMAT},                              /* overflow */
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1,1), }", 4,
         BL_ERR_FORMAT},                                                     /* too many dims */
        {"{'descr': '<f4\\'', 'fortran_order': False, 'shape': (3, 4), }", 48, BL_ERR_FORMAT},
        {"['descr', '<f4']", 48, BL_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bl_status s = parse(1, bad[i].dict, bad[i].nbytes, &h);
        CHECK_MSG(s == bad[i].want, "case %zu: status %d, expected %d", i, (int)s, (int)bad[i].want);
    }
    /* broken preambles: every truncation of a valid image, a bad magic and versions */
    size_t len;
    uint8_t *b = image(1, good, 48, &len);
    bl_err err = {0};
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *t = malloc(cut ? cut : 1);
        memcpy(t, b, cut);
        CHECK(bl_npy_parse(t, cut, NULL, &h, &err) != BL_OK);
        free(t);
    }
    b[1] = 'n';
    CHECK(bl_npy_parse(b, len, NULL, &h, &err) == BL_ERR_FORMAT);
    b[1] = 'N';
    b[6] = 4;
    CHECK(bl_npy_parse(b, len, NULL, &h, &err) == BL_ERR_UNSUPPORTED);
    b[6] = 1;
    b[8] = 0xff, b[9] = 0xff; /* header length beyond the image */
    CHECK(bl_npy_parse(b, len, NULL, &h, &err) == BL_ERR_FORMAT);
    free(b);
    CHECK(bl_npy_parse(NULL, 0, NULL, &h, &err) == BL_ERR_FORMAT);
}

/* The writer's files parse back to the same values; Fortran order and float16/float64 images
 * convert to the same row-major f32 array. */
static void test_roundtrip(void) {
    char path[] = "/tmp/bitllm-npy-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    close(fd);
    const int64_t shape[2] = {3, 5};
    float v[15];
    for (int i = 0; i < 15; i++) v[i] = (float)i * 0.25f - 1.0f;
    bl_err err = {0};
    REQUIRE(bl_npy_write_f32(path, v, 2, shape, &err) == BL_OK);
    float *got;
    bl_npy_header h;
    REQUIRE(bl_npy_read_f32(path, &got, &h, &err) == BL_OK);
    CHECK(h.ndim == 2 && h.shape[0] == 3 && h.shape[1] == 5 && h.data_offset % 64 == 0);
    CHECK(memcmp(got, v, sizeof v) == 0);
    free(got);
    const int64_t vec[1] = {7};
    REQUIRE(bl_npy_write_f32(path, v, 1, vec, &err) == BL_OK);
    REQUIRE(bl_npy_read_f32(path, &got, &h, &err) == BL_OK);
    CHECK(h.ndim == 1 && h.shape[0] == 7 && memcmp(got, v, 7 * sizeof *v) == 0);
    free(got);
    unlink(path);
    /* Fortran order: element (i, j) at offset i + 3j; float16 values 0.5·k */
    size_t len;
    uint8_t *b = image(1, "{'descr': '<f2', 'fortran_order': True, 'shape': (3, 5), }", 30, &len);
    uint8_t *d = b + len - 30;
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 5; j++) {
            uint16_t x = bl_f32_to_f16(0.5f * (float)(i * 5 + j));
            memcpy(d + 2 * (i + 3 * j), &x, 2);
        }
    REQUIRE(bl_npy_to_f32(b, len, "f.npy", &got, &h, &err) == BL_OK);
    for (int k = 0; k < 15; k++) CHECK(got[k] == 0.5f * (float)k);
    free(got);
    free(b);
    /* an integer array parses but is not converted: the float reader says so */
    b = image(1, "{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }", 12, &len);
    CHECK(bl_npy_to_f32(b, len, "i.npy", &got, &h, &err) == BL_ERR_UNSUPPORTED && got == NULL);
    CHECK(strstr(err.msg, "i.npy") && strstr(err.msg, "'<i4' is not float16"));
    free(b);
}

int main(void) {
    TEST_RUN(test_headers);
    TEST_RUN(test_rejects);
    TEST_RUN(test_roundtrip);
    return test_summary();
}
