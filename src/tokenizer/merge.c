/* The BPE merge loop shared by both tokenizer kinds.
 *
 * The specification (llama2.c's encoder, HF tokenizers' Word::merge_all) is: while some adjacent
 * pair of symbols can merge, merge the best one, where best is the highest piece score
 * (SentencePiece vocabularies with scores) or the lowest merge rank (merge lists), and the leftmost
 * among equals. Rescanning the sequence after every merge is quadratic, which matters for
 * SentencePiece where a whole document is one sequence. Here candidate pairs sit in a binary heap
 * ordered by (priority, left position) and symbols in a doubly linked list; a popped candidate is
 * stale when either side has changed since it was pushed (a symbol's id changes with every merge
 * into it, and a merged-away symbol is unlinked), so the order of merges is exactly the
 * specification's, in O(n log n). */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

bool tk_ws_push(tk_merge_ws *ws, int32_t id, uint32_t start, uint32_t len, bool fixed) {
    if (ws->n >= INT32_MAX) return false;
    if (ws->n == ws->cap) {
        tk_sym *p = tk_grow(ws->sym, &ws->cap, ws->n + 1, sizeof *p);
        if (!p) return false;
        ws->sym = p;
    }
    tk_sym *s = &ws->sym[ws->n];
    s->id = id;
    s->start = start;
    s->len = len;
    s->fixed = fixed;
    s->prev = (int32_t)ws->n - 1;
    s->next = -1;
    if (ws->n) ws->sym[ws->n - 1].next = (int32_t)ws->n;
    ws->n++;
    return true;
}

void tk_ws_free(tk_merge_ws *ws) {
    free(ws->sym);
    free(ws->heap);
    memset(ws, 0, sizeof *ws);
}

/* a comes out of the heap before b */
static bool cand_before(const tk_cand *a, const tk_cand *b) {
    if (a->prio != b->prio) return a->prio > b->prio;
    return a->left < b->left;
}

static bool heap_push(tk_merge_ws *ws, const tk_cand *c) {
    if (ws->hn == ws->hcap) {
        tk_cand *p = tk_grow(ws->heap, &ws->hcap, ws->hn + 1, sizeof *p);
        if (!p) return false;
        ws->heap = p;
    }
    size_t i = ws->hn++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!cand_before(c, &ws->heap[parent])) break;
        ws->heap[i] = ws->heap[parent];
        i = parent;
    }
    ws->heap[i] = *c;
    return true;
}

static tk_cand heap_pop(tk_merge_ws *ws) {
    tk_cand top = ws->heap[0];
    tk_cand last = ws->heap[--ws->hn];
    size_t i = 0, n = ws->hn;
    for (;;) {
        size_t l = 2 * i + 1, best = l;
        if (l >= n) break;
        if (l + 1 < n && cand_before(&ws->heap[l + 1], &ws->heap[l])) best = l + 1;
        if (!cand_before(&ws->heap[best], &last)) break;
        ws->heap[i] = ws->heap[best];
        i = best;
    }
    if (n) ws->heap[i] = last;
    return top;
}

/* Pushes the pair (left, right) if it can merge. */
static bool try_pair(const bl_tokenizer *t, const char *text, tk_merge_ws *ws, int32_t left,
                     int32_t right) {
    if (left < 0 || right < 0) return true;
    const tk_sym *a = &ws->sym[left], *b = &ws->sym[right];
    tk_cand c;
    if (t->use_ranks) {
        int32_t rank;
        if (a->id < 0 || b->id < 0 || !tk_pairmap_get(&t->merges, a->id, b->id, &rank, &c.id))
            return true;
        c.prio = -(double)rank;
    } else {
        if (a->fixed || b->fixed) return true;
        c.id = tk_strmap_get(&t->pieces, text + a->start, (size_t)a->len + b->len);
        if (c.id < 0) return true;
        c.prio = t->score[c.id];
    }
    c.left = left;
    c.right = right;
    c.lid = a->id;
    c.rid = b->id;
    return heap_push(ws, &c);
}

bool tk_merge(const bl_tokenizer *t, const char *text, tk_merge_ws *ws) {
    ws->hn = 0;
    for (size_t i = 0; i + 1 < ws->n; i++)
        if (!try_pair(t, text, ws, (int32_t)i, (int32_t)i + 1)) return false;
    while (ws->hn) {
        tk_cand c = heap_pop(ws);
        tk_sym *a = &ws->sym[c.left], *b = &ws->sym[c.right];
        /* Stale: the right symbol was merged away (len 0), the two are no longer neighbours, or
         * either changed id by merging with something else. */
        if (b->len == 0 || a->len == 0 || a->next != c.right || a->id != c.lid || b->id != c.rid)
            continue;
        a->id = c.id;
        a->len += b->len;
        a->fixed = false;
        b->len = 0;
        a->next = b->next;
        if (b->next >= 0) ws->sym[b->next].prev = c.left;
        if (!try_pair(t, text, ws, a->prev, c.left) || !try_pair(t, text, ws, c.left, a->next))
            return false;
    }
    return true;
}
