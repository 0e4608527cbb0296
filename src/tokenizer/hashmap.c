/* Byte buffers and the two open-addressing hash maps the tokenizers are built on: piece bytes ->
 * id (vocabularies of 150k+ entries must load in well under a second, so no linear searches) and
 * (left id, right id) -> (rank, merged id) for merge lists. Linear probing, power-of-two tables
 * kept at most half full. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

bool tk_buf_reserve(tk_buf *b, size_t extra) {
    size_t need;
    if (bl_add_overflows(b->n, extra, &need)) return false;
    if (need <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) return false;
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p) return false;
    b->p = p;
    b->cap = cap;
    return true;
}

void *tk_grow(void *p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return p;
    size_t n = *cap ? *cap : 64;
    while (n < need) {
        if (n > SIZE_MAX / 2) return NULL;
        n *= 2;
    }
    size_t bytes;
    if (bl_mul_overflows(n, elem, &bytes)) return NULL;
    void *q = realloc(p, bytes);
    if (q) *cap = n;
    return q;
}

bool tk_buf_put(tk_buf *b, const void *s, size_t n) {
    if (!tk_buf_reserve(b, n)) return false;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    return true;
}

void tk_buf_free(tk_buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

bool tk_ids_push(tk_ids *v, int32_t id) {
    if (v->n == v->cap) {
        int32_t *p = tk_grow(v->p, &v->cap, v->n + 1, sizeof *p);
        if (!p) return false;
        v->p = p;
    }
    v->p[v->n++] = id;
    return true;
}

/* 32-bit hash of a short byte string: 8 bytes at a time through a multiply-xorshift mixer. */
static uint32_t hash_bytes(const void *key, size_t len) {
    const uint8_t *p = key;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (len * 0xC2B2AE3D27D4EB4Full);
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 32;
        p += 8;
        len -= 8;
    }
    uint64_t w = 0;
    for (size_t i = 0; i < len; i++) w |= (uint64_t)p[i] << (8 * i);
    h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 29;
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 32;
    return (uint32_t)h;
}

static uint32_t cap_for(size_t expected) {
    uint32_t cap = 16;
    while (cap < expected * 2 && cap < (1u << 30)) cap *= 2;
    return cap;
}

bool tk_strmap_init(tk_strmap *m, size_t expected) {
    memset(m, 0, sizeof *m);
    m->cap = cap_for(expected);
    m->slot = bl_malloc_array(m->cap, sizeof *m->slot);
    if (!m->slot || !tk_buf_reserve(&m->keys, 1)) return false; /* keys.p never NULL */
    for (uint32_t i = 0; i < m->cap; i++) m->slot[i].val = -1;
    return true;
}

static bool strmap_grow(tk_strmap *m) {
    uint32_t ncap = m->cap * 2;
    if (ncap == 0 || ncap > (1u << 30)) return false;
    tk_strslot *ns = bl_malloc_array(ncap, sizeof *ns);
    if (!ns) return false;
    for (uint32_t i = 0; i < ncap; i++) ns[i].val = -1;
    for (uint32_t i = 0; i < m->cap; i++) {
        if (m->slot[i].val < 0) continue;
        uint32_t j = m->slot[i].hash & (ncap - 1);
        while (ns[j].val >= 0) j = (j + 1) & (ncap - 1);
        ns[j] = m->slot[i];
    }
    free(m->slot);
    m->slot = ns;
    m->cap = ncap;
    return true;
}

static tk_strslot *strmap_find(const tk_strmap *m, const void *key, size_t len, uint32_t h) {
    uint32_t j = h & (m->cap - 1);
    for (;;) {
        tk_strslot *s = &m->slot[j];
        if (s->val < 0) return s;
        if (s->hash == h && s->len == len && memcmp(m->keys.p + s->off, key, len) == 0) return s;
        j = (j + 1) & (m->cap - 1);
    }
}

bool tk_strmap_put(tk_strmap *m, const void *key, size_t len, int32_t val, int32_t *old) {
    if (len > UINT32_MAX || m->keys.n + len > UINT32_MAX) return false;
    if ((m->n + 1) * 2 > m->cap && !strmap_grow(m)) return false;
    uint32_t h = hash_bytes(key, len);
    tk_strslot *s = strmap_find(m, key, len, h);
    if (old) *old = s->val;
    if (s->val >= 0) return true;
    uint32_t off = (uint32_t)m->keys.n;
    if (!tk_buf_put(&m->keys, key, len)) return false;
    s->hash = h;
    s->off = off;
    s->len = (uint32_t)len;
    s->val = val;
    m->n++;
    return true;
}

int32_t tk_strmap_get(const tk_strmap *m, const void *key, size_t len) {
    if (!m->slot) return -1;
    return strmap_find(m, key, len, hash_bytes(key, len))->val;
}

void tk_strmap_free(tk_strmap *m) {
    free(m->slot);
    tk_buf_free(&m->keys);
    memset(m, 0, sizeof *m);
}

static uint32_t hash_pair(uint64_t k) {
    k ^= k >> 33;
    k *= 0xFF51AFD7ED558CCDull;
    k ^= k >> 33;
    k *= 0xC4CEB9FE1A85EC53ull;
    k ^= k >> 33;
    return (uint32_t)k;
}

bool tk_pairmap_init(tk_pairmap *m, size_t expected) {
    m->n = 0;
    m->cap = cap_for(expected);
    m->slot = bl_malloc_array(m->cap, sizeof *m->slot);
    if (!m->slot) return false;
    for (uint32_t i = 0; i < m->cap; i++) m->slot[i].key = UINT64_MAX;
    return true;
}

static bool pairmap_grow(tk_pairmap *m) {
    uint32_t ncap = m->cap * 2;
    if (ncap == 0 || ncap > (1u << 30)) return false;
    tk_pairslot *ns = bl_malloc_array(ncap, sizeof *ns);
    if (!ns) return false;
    for (uint32_t i = 0; i < ncap; i++) ns[i].key = UINT64_MAX;
    for (uint32_t i = 0; i < m->cap; i++) {
        if (m->slot[i].key == UINT64_MAX) continue;
        uint32_t j = hash_pair(m->slot[i].key) & (ncap - 1);
        while (ns[j].key != UINT64_MAX) j = (j + 1) & (ncap - 1);
        ns[j] = m->slot[i];
    }
    free(m->slot);
    m->slot = ns;
    m->cap = ncap;
    return true;
}

bool tk_pairmap_put(tk_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t id) {
    if ((m->n + 1) * 2 > m->cap && !pairmap_grow(m)) return false;
    uint64_t k = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint32_t j = hash_pair(k) & (m->cap - 1);
    while (m->slot[j].key != UINT64_MAX) {
        if (m->slot[j].key == k) return true;
        j = (j + 1) & (m->cap - 1);
    }
    m->slot[j].key = k;
    m->slot[j].rank = rank;
    m->slot[j].id = id;
    m->n++;
    return true;
}

bool tk_pairmap_get(const tk_pairmap *m, int32_t a, int32_t b, int32_t *rank, int32_t *id) {
    if (!m->slot) return false;
    uint64_t k = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint32_t j = hash_pair(k) & (m->cap - 1);
    while (m->slot[j].key != UINT64_MAX) {
        if (m->slot[j].key == k) {
            *rank = m->slot[j].rank;
            *id = m->slot[j].id;
            return true;
        }
        j = (j + 1) & (m->cap - 1);
    }
    return false;
}

void tk_pairmap_free(tk_pairmap *m) {
    free(m->slot);
    memset(m, 0, sizeof *m);
}
