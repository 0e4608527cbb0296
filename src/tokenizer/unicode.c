/* UTF-8 helpers and Unicode NFC (the normalizer of Qwen's tokenizer.json).
 *
 * NFC is the full algorithm of UAX #15 (canonical decomposition, canonical ordering, canonical
 * composition, Hangul by arithmetic) over the tables in nfc_data.h, generated from Unicode 14.0.
 * Characters assigned after 14.0 pass through unchanged. Text without a byte >= 0xCC (ASCII,
 * Latin-1 and everything below U+0300) is already NFC and is copied as is; otherwise the text from
 * the character before the first such byte on goes through the full algorithm. Invalid UTF-8
 * bytes are kept unchanged and act as starters that compose with nothing. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/nfc_data.h"
#include "tokenizer/tok_internal.h"

size_t tk_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp) {
    uint8_t c = s[0];
    size_t len;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
        len = 2, v = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3, v = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        *cp = c;
        return 0;
    }
    if (len > n) {
        *cp = c;
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            *cp = c;
            return 0;
        }
        v = v << 6 | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        *cp = c;
        return 0;
    }
    *cp = v;
    return len;
}

size_t tk_utf8_char(const uint8_t *s, size_t n, uint32_t *cp) {
    size_t len = tk_utf8_decode(s, n, cp);
    if (len) return len;
    *cp = TK_RAW_BYTE + s[0];
    return 1;
}

size_t tk_utf8_len(const uint8_t *s, size_t n) {
    uint32_t cp;
    size_t len = tk_utf8_decode(s, n, &cp);
    return len ? len : 1;
}

size_t tk_utf8_encode(uint32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    } else if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    } else if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

bool tk_is_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000;
}

/* Invalid bytes become TK_RAW_BYTE + byte: above the Unicode range, so no table holds them. */
#define RAW_BYTE TK_RAW_BYTE

enum { SBASE = 0xAC00, LBASE = 0x1100, VBASE = 0x1161, TBASE = 0x11A7, LCOUNT = 19, VCOUNT = 21,
       TCOUNT = 28, NCOUNT = VCOUNT * TCOUNT, SCOUNT = LCOUNT * NCOUNT };

static int ccc(uint32_t cp) {
    size_t lo = 0, hi = sizeof tk_nfc_ccc / sizeof tk_nfc_ccc[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < tk_nfc_ccc[mid][0]) hi = mid;
        else if (cp > tk_nfc_ccc[mid][1]) lo = mid + 1;
        else return (int)tk_nfc_ccc[mid][2];
    }
    return 0;
}

static const uint32_t *decomp_of(uint32_t cp) {
    size_t lo = 0, hi = sizeof tk_nfc_decomp / sizeof tk_nfc_decomp[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < tk_nfc_decomp[mid][0]) hi = mid;
        else if (cp > tk_nfc_decomp[mid][0]) lo = mid + 1;
        else return tk_nfc_decomp[mid];
    }
    return NULL;
}

/* Primary composite of (a, b), or 0. */
static uint32_t compose(uint32_t a, uint32_t b) {
    if (a >= LBASE && a < LBASE + LCOUNT && b >= VBASE && b < VBASE + VCOUNT)
        return SBASE + ((a - LBASE) * VCOUNT + (b - VBASE)) * TCOUNT;
    if (a >= SBASE && a < SBASE + SCOUNT && (a - SBASE) % TCOUNT == 0 && b > TBASE &&
        b < TBASE + TCOUNT)
        return a + (b - TBASE);
    size_t lo = 0, hi = sizeof tk_nfc_comp / sizeof tk_nfc_comp[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const uint32_t *e = tk_nfc_comp[mid];
        if (a < e[0] || (a == e[0] && b < e[1])) hi = mid;
        else if (a > e[0] || b > e[1]) lo = mid + 1;
        else return e[2];
    }
    return 0;
}

typedef struct {
    uint32_t *cp;
    size_t n, cap;
} cpvec;

static bool cp_push(cpvec *v, uint32_t cp) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        uint32_t *p = realloc(v->cp, cap * sizeof *p);
        if (!p) return false;
        v->cp = p;
        v->cap = cap;
    }
    v->cp[v->n++] = cp;
    return true;
}

/* Full canonical decomposition (decomposition mappings are at most 2 deep in code points but
 * nest, hence the recursion; depth is bounded by the data, at most 4). */
static bool decompose(uint32_t cp, cpvec *out) {
    if (cp >= SBASE && cp < SBASE + SCOUNT) {
        uint32_t s = cp - SBASE;
        if (!cp_push(out, LBASE + s / NCOUNT) || !cp_push(out, VBASE + s % NCOUNT / TCOUNT))
            return false;
        return s % TCOUNT == 0 || cp_push(out, TBASE + s % TCOUNT);
    }
    const uint32_t *d = decomp_of(cp);
    if (!d) return cp_push(out, cp);
    if (!decompose(d[1], out)) return false;
    return d[2] == 0 || decompose(d[2], out);
}

static int ccc_any(uint32_t cp) { return cp >= RAW_BYTE ? 0 : ccc(cp); }

/* Reorders and composes v->cp in place (UAX #15 canonical ordering + composition). */
static void order_and_compose(cpvec *v) {
    uint32_t *c = v->cp;
    size_t n = v->n;
    /* canonical ordering: stable sort of each run of non-starters by combining class */
    for (size_t i = 1; i < n; i++) {
        int ci = ccc_any(c[i]);
        if (ci == 0) continue;
        size_t j = i;
        while (j > 0) {
            int cj = ccc_any(c[j - 1]);
            if (cj <= ci) break;
            uint32_t tmp = c[j];
            c[j] = c[j - 1];
            c[j - 1] = tmp;
            j--;
        }
    }
    if (n == 0) return;
    size_t starter = 0, out = 1;
    int last = ccc_any(c[0]) ? 256 : 0; /* a leading non-starter blocks composition */
    for (size_t i = 1; i < n; i++) {
        uint32_t ch = c[i];
        int cc = ccc_any(ch);
        uint32_t comp = 0;
        if (c[starter] < RAW_BYTE && ch < RAW_BYTE && (last < cc || last == 0))
            comp = compose(c[starter], ch);
        if (comp && ccc_any(c[starter]) == 0) {
            c[starter] = comp;
            continue;
        }
        if (cc == 0) starter = out;
        last = cc;
        c[out++] = ch;
    }
    v->n = out;
}

/* A character nothing before it can interact with: a starter without a decomposition that is
 * never the second half of a composite. Text can be cut before one and normalized piecewise. */
static bool inert(uint32_t cp) {
    if (cp < 0x300) return true; /* decompositions here start with a plain starter */
    if (cp >= RAW_BYTE) return true;
    if ((cp >= VBASE && cp < VBASE + VCOUNT) || (cp > TBASE && cp < TBASE + TCOUNT)) return false;
    if (ccc(cp) != 0 || decomp_of(cp)) return false;
    size_t lo = 0, hi = sizeof tk_nfc_second0 / sizeof tk_nfc_second0[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < tk_nfc_second0[mid]) hi = mid;
        else if (cp > tk_nfc_second0[mid]) lo = mid + 1;
        else return false;
    }
    return true;
}

/* Full NFC of one run s[0..n) into out. */
static bool nfc_run(const uint8_t *s, size_t n, cpvec *v, tk_buf *out) {
    v->n = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += tk_utf8_char(s + i, n - i, &cp);
        if (!(cp >= RAW_BYTE ? cp_push(v, cp) : decompose(cp, v))) return false;
    }
    order_and_compose(v);
    for (size_t k = 0; k < v->n; k++) {
        char enc[4];
        bool ok;
        if (v->cp[k] >= RAW_BYTE) {
            enc[0] = (char)(v->cp[k] - RAW_BYTE);
            ok = tk_buf_put(out, enc, 1);
        } else {
            ok = tk_buf_put(out, enc, tk_utf8_encode(v->cp[k], enc));
        }
        if (!ok) return false;
    }
    return true;
}

bool tk_nfc(const char *s, size_t n, tk_buf *out) {
    const uint8_t *u = (const uint8_t *)s;
    size_t i = 0;
    while (i < n && u[i] < 0xCC) i++;
    if (i == n) return tk_buf_put(out, s, n);
    /* Each non-inert character belongs to the run that starts at the inert character before it
     * (or at the start of the text) and goes on to the next inert one: such runs go through the
     * full algorithm, everything between them is copied. */
    cpvec v = {0};
    bool ok = tk_buf_reserve(out, n);
    size_t done = 0, last_inert = SIZE_MAX;
    for (i = 0; ok && i < n;) {
        uint32_t cp;
        size_t l = u[i] < 0x80 ? (cp = u[i], 1) : tk_utf8_char(u + i, n - i, &cp);
        if (inert(cp)) {
            last_inert = i;
            i += l;
            continue;
        }
        size_t rs = last_inert != SIZE_MAX && last_inert >= done ? last_inert : done, j = i + l;
        while (j < n) {
            size_t l2 = tk_utf8_char(u + j, n - j, &cp);
            if (inert(cp)) break;
            j += l2;
        }
        ok = tk_buf_put(out, s + done, rs - done) && nfc_run(u + rs, j - rs, &v, out);
        done = i = j;
        last_inert = SIZE_MAX;
    }
    ok = ok && tk_buf_put(out, s + done, n - done);
    free(v.cp);
    return ok;
}
