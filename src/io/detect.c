/* What a file is, from its bytes rather than its name: loaders dispatch on this, and their error
 * messages say what a rejected file looks like ("starts with GGUF magic: a GGUF file?"). */
#include "bitllm/io.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const kind_names[] = {
    [BL_FILE_UNKNOWN] = "an unrecognised file",
    [BL_FILE_EMPTY] = "an empty file",
    [BL_FILE_DIR] = "a directory",
    [BL_FILE_GGUF] = "a GGUF file",
    [BL_FILE_SAFETENSORS] = "a safetensors file",
    [BL_FILE_LLAMA2C] = "a llama2.c checkpoint",
    [BL_FILE_LLAMA2C_TOKENIZER] = "a llama2.c tokenizer.bin",
    [BL_FILE_JSON] = "a JSON file",
    [BL_FILE_ZIP] = "a zip archive (a PyTorch checkpoint?)",
    [BL_FILE_PICKLE] = "a Python pickle (a PyTorch checkpoint?)",
    [BL_FILE_NPY] = "a NumPy .npy array",
};

const char *bl_file_kind_name(bl_file_kind k) {
    return (unsigned)k < sizeof kind_names / sizeof kind_names[0] ? kind_names[k]
                                                                   : kind_names[0];
}

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* llama2.c's tokenizer.bin: int32 max_token_length, then (f32 score, int32 len, bytes) records.
 * Plausible when the first two records parse with finite scores and lengths within the maximum. */
static bool tokenizer_bin_plausible(const uint8_t *p, size_t n) {
    if (n < 4) return false;
    uint32_t max_len = le32(p);
    if (max_len == 0 || max_len > 1024) return false;
    size_t off = 4;
    for (int rec = 0; rec < 2; rec++) {
        if (n - off < 8) return rec > 0;
        uint32_t bits = le32(p + off), len = le32(p + off + 4);
        float score;
        memcpy(&score, &bits, 4);
        if (!isfinite(score) || len > max_len || len > n - off - 8) return false;
        off += 8 + len;
    }
    return true;
}

static bool safetensors_plausible(const uint8_t *p, size_t n, uint64_t size) {
    if (n < 9 || size < 9) return false;
    uint64_t hlen = (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
    return hlen >= 2 && hlen <= size - 8 && p[8] == '{';
}

bl_file_kind bl_detect_bytes(const uint8_t *p, size_t n, uint64_t size) {
    if (size == 0) return BL_FILE_EMPTY;
    if (n >= 4 && memcmp(p, "GGUF", 4) == 0) return BL_FILE_GGUF;
    if (n >= 4 && memcmp(p, "24ka", 4) == 0) return BL_FILE_LLAMA2C; /* 0x616b3432, versioned */
    if (safetensors_plausible(p, n, size)) return BL_FILE_SAFETENSORS;
    if (n >= 4 && memcmp(p, "PK\x03\x04", 4) == 0) return BL_FILE_ZIP;
    if (n >= 6 && memcmp(p, "\x93NUMPY", 6) == 0) return BL_FILE_NPY;
    if (n >= 2 && p[0] == 0x80 && p[1] >= 2 && p[1] <= 5) return BL_FILE_PICKLE;
    size_t i = 0;
    if (n >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0) i = 3; /* UTF-8 byte order mark */
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r')) i++;
    if (i < n && (p[i] == '{' || p[i] == '[')) return BL_FILE_JSON;
    /* The legacy llama2.c header is 7 int32 with no magic: its fields in range. */
    if (bl_llama2c_header_valid(p, n)) return BL_FILE_LLAMA2C;
    if (tokenizer_bin_plausible(p, n)) return BL_FILE_LLAMA2C_TOKENIZER;
    return BL_FILE_UNKNOWN;
}

void bl_describe_content(const uint8_t *p, size_t n, uint64_t size, char *buf, size_t cap) {
    if (!cap) return;
    if (n > size) n = (size_t)size;
    switch (bl_detect_bytes(p, n, size)) {
    case BL_FILE_EMPTY: snprintf(buf, cap, "the file is empty"); return;
    case BL_FILE_GGUF: snprintf(buf, cap, "starts with GGUF magic: a GGUF file?"); return;
    case BL_FILE_SAFETENSORS:
        snprintf(buf, cap, "starts with a safetensors header: a safetensors file?");
        return;
    case BL_FILE_LLAMA2C:
        snprintf(buf, cap, "has a llama2.c header: a llama2.c checkpoint?");
        return;
    case BL_FILE_LLAMA2C_TOKENIZER:
        snprintf(buf, cap, "looks like a llama2.c tokenizer.bin");
        return;
    case BL_FILE_JSON: snprintf(buf, cap, "starts with '%c': a JSON file?", p[0] == '[' ? '[' : '{');
        return;
    case BL_FILE_ZIP: snprintf(buf, cap, "a zip archive: a PyTorch checkpoint?"); return;
    case BL_FILE_PICKLE: snprintf(buf, cap, "a Python pickle: a PyTorch checkpoint?"); return;
    case BL_FILE_NPY: snprintf(buf, cap, "starts with the .npy magic: a NumPy array?"); return;
    default: break;
    }
    int len = snprintf(buf, cap, "starts with bytes");
    for (size_t i = 0; i < 8 && i < n && len > 0 && (size_t)len < cap; i++)
        len += snprintf(buf + len, cap - (size_t)len, " %02x", p[i]);
}

bl_status bl_detect_file(const char *path, bl_file_kind *kind, char *what, size_t cap,
                         bl_err *err) {
    *kind = BL_FILE_UNKNOWN;
    if (what && cap) what[0] = 0;
    struct stat st;
    if (stat(path, &st) != 0)
        return bl_fail(err, BL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        *kind = BL_FILE_DIR;
        if (what && cap) snprintf(what, cap, "a directory");
        return BL_OK;
    }
    if (!S_ISREG(st.st_mode)) return bl_fail(err, BL_ERR_IO, "%s: not a regular file", path);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return bl_fail(err, BL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    uint8_t head[BL_DETECT_BYTES];
    size_t got = 0;
    while (got < sizeof head) {
        ssize_t r = read(fd, head + got, sizeof head - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    uint64_t size = (uint64_t)st.st_size;
    *kind = bl_detect_bytes(head, got, size);
    if (what && cap) bl_describe_content(head, got, size, what, cap);
    return BL_OK;
}
