#include "bitllm/core.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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

/* From 4 MiB: 2 MiB-aligned and marked for transparent huge pages. Buffers that are filled a
 * little at a time (a KV cache grows by one position per token) otherwise take one page fault per
 * 4 KiB on first touch, each an exit to the hypervisor on a virtual machine: in a batched decode
 * step of a 7B model those faults took ~6 % of the time. Where THP is off the hint is ignored.
 * The memory is still committed only as it is touched. Release with bl_aligned_free. */
#define HUGE_BYTES ((size_t)2 << 20)
void *bl_aligned_alloc_large(size_t n) {
    if (n < 2 * HUGE_BYTES) return bl_aligned_alloc(n);
    void *p = NULL;
    if (posix_memalign(&p, HUGE_BYTES, n) != 0) return NULL;
#ifdef MADV_HUGEPAGE
    (void)madvise(p, n / HUGE_BYTES * HUGE_BYTES, MADV_HUGEPAGE); /* a hint */
#endif
    return p;
}

char *bl_strndup(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

char *bl_strdup(const char *s) { return bl_strndup(s, strlen(s)); }
