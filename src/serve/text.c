/* Text helpers of the server and the chat session: growable strings, stop strings. */
#include <stdlib.h>
#include <string.h>

#include "serve/serve_internal.h"

bool srv_str_put(srv_str *s, const char *p, size_t n) {
    size_t need;
    if (bl_add_overflows(s->n, n, &need) || bl_add_overflows(need, 1, &need)) return false;
    if (need > s->cap) {
        size_t cap = s->cap ? s->cap : 64;
        while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
        char *q = realloc(s->p, cap);
        if (!q) return false;
        s->p = q;
        s->cap = cap;
    }
    if (n) memcpy(s->p + s->n, p, n);
    s->n += n;
    s->p[s->n] = 0;
    return true;
}

void srv_str_free(srv_str *s) {
    free(s->p);
    s->p = NULL;
    s->n = s->cap = 0;
}

size_t srv_utf8_chars(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ((unsigned char)s[i] & 0xC0) != 0x80; /* not a continuation */
    return k;
}

/* ---- stop strings ---- */

long srv_find_stop(const char *text, size_t n, size_t from, char *const *stop, int n_stop) {
    long best = -1;
    for (int k = 0; k < n_stop; k++) {
        const size_t len = strlen(stop[k]);
        if (len == 0 || len > n) continue;
        size_t start = from >= len - 1 ? from - (len - 1) : 0;
        for (size_t i = start; i + len <= n; i++)
            if (memcmp(text + i, stop[k], len) == 0) {
                if (best < 0 || (long)i < best) best = (long)i;
                break;
            }
    }
    return best;
}

size_t srv_stop_hold(const char *text, size_t n, char *const *stop, int n_stop) {
    size_t hold = 0;
    for (int k = 0; k < n_stop; k++) {
        const size_t len = strlen(stop[k]);
        for (size_t l = len > 0 ? len - 1 : 0; l > hold; l--)
            if (l <= n && memcmp(text + n - l, stop[k], l) == 0) {
                hold = l;
                break;
            }
    }
    return hold;
}
