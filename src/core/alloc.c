#include "bitllm/core.h"

#include <stdlib.h>
#include <string.h>

bool bl_mul_overflows(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return true;
    *out = a * b;
    return false;
}

bool bl_add_overflows(size_t a, size_t b, size_t *out) {
    if (b > SIZE_MAX - a) return true;
    *out = a + b;
    return false;
}

void *bl_malloc(size_t n) { return malloc(n ? n : 1); }

void *bl_calloc(size_t count, size_t size) {
    if (count == 0 || size == 0) return calloc(1, 1);
    return calloc(count, size);
}

void *bl_malloc_array(size_t count, size_t size) {
    size_t n;
    if (bl_mul_overflows(count, size, &n)) return NULL;
    return bl_malloc(n);
}

void *bl_aligned_alloc(size_t n) {
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? n : 64) != 0) return NULL;
    return p;
}

void bl_aligned_free(void *p) { free(p); }

char *bl_strndup(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

char *bl_strdup(const char *s) { return bl_strndup(s, strlen(s)); }
