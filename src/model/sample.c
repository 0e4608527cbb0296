/* Token sampling: penalties on the recent text, then greedy, temperature, nucleus (top-p). */
#include "bitllm/model.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

bl_status bl_sampler_init(bl_sampler *s, int vocab, float temperature, float top_p,
                          uint64_t seed, bl_err *err) {
    memset(s, 0, sizeof *s);
    s->pen = BL_PENALTIES_OFF;
    if (vocab < 1) return bl_fail(err, BL_ERR_ARG, "sampler: vocabulary of %d tokens", vocab);
    if (!(temperature >= 0.0f))
        return bl_fail(err, BL_ERR_ARG, "temperature must be >= 0, got %g", (double)temperature);
    if (!(top_p > 0.0f && top_p <= 1.0f))
        return bl_fail(err, BL_ERR_ARG, "top-p must be in (0, 1], got %g", (double)top_p);
    s->vocab = vocab;
    s->temperature = temperature;
    s->top_p = top_p;
    bl_rng_seed(&s->rng, seed);
    s->probs = malloc((size_t)vocab * sizeof(float));
    s->cand = malloc((size_t)vocab * sizeof *s->cand);
    if (!s->probs || !s->cand) {
        bl_sampler_free(s);
        return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    }
    return BL_OK;
}

static void free_penalties(bl_sampler *s) {
    free(s->count), free(s->where), free(s->present), free(s->hist), free(s->adjusted);
    s->count = s->where = s->present = NULL;
    s->hist = NULL;
    s->adjusted = NULL;
    s->n_present = 0;
    s->n_seen = 0;
}

void bl_sampler_free(bl_sampler *s) {
    free(s->probs);
    free(s->cand);
    s->probs = NULL;
    s->cand = NULL;
    free_penalties(s);
}

bool bl_penalties_active(const bl_penalties *p) {
    return p->last_n != 0 && (p->repeat != 1.0f || p->presence != 0.0f || p->frequency != 0.0f);
}

bl_status bl_sampler_set_penalties(bl_sampler *s, const bl_penalties *p, bl_err *err) {
    if (!(p->repeat > 0.0f && isfinite(p->repeat)))
        return bl_fail(err, BL_ERR_ARG, "repeat penalty must be a finite number > 0, got %g",
                       (double)p->repeat);
    if (!isfinite(p->presence) || !isfinite(p->frequency))
        return bl_fail(err, BL_ERR_ARG, "%s penalty must be finite, got %g",
                       isfinite(p->presence) ? "frequency" : "presence",
                       (double)(isfinite(p->presence) ? p->frequency : p->presence));
    if (p->last_n < -1)
        return bl_fail(err, BL_ERR_ARG, "the penalties' window must be > 0 tokens, -1 (all) or 0 "
                       "(none), got %d", p->last_n);
    free_penalties(s);
    s->pen = *p;
    if (!bl_penalties_active(p)) return BL_OK;
    const size_t V = (size_t)s->vocab;
    s->count = calloc(V, sizeof *s->count);
    s->where = malloc(V * sizeof *s->where);
    s->present = malloc(V * sizeof *s->present);
    s->adjusted = malloc(V * sizeof *s->adjusted);
    if (p->last_n > 0) s->hist = malloc((size_t)p->last_n * sizeof *s->hist);
    if (!s->count || !s->where || !s->present || !s->adjusted || (p->last_n > 0 && !s->hist)) {
        free_penalties(s);
        s->pen = BL_PENALTIES_OFF;
        return bl_fail(err, BL_ERR_NOMEM, "sampler penalties: out of memory");
    }
    for (size_t i = 0; i < V; i++) s->where[i] = -1;
    return BL_OK;
}

/* One more (d = +1) or one fewer (d = -1) occurrence of token t in the window. */
static void recount(bl_sampler *s, int t, int d) {
    s->count[t] += d;
    if (d > 0 && s->count[t] == 1) {
        s->where[t] = s->n_present;
        s->present[s->n_present++] = t;
    } else if (d < 0 && s->count[t] == 0) {
        const int k = s->where[t], last = s->present[--s->n_present];
        s->present[k] = last;
        s->where[last] = k;
        s->where[t] = -1;
    }
}

void bl_sampler_accept(bl_sampler *s, int token) {
    if (!s->count || token < 0 || token >= s->vocab) return;
    if (s->hist) {
        const int64_t slot = s->n_seen % s->pen.last_n;
        if (s->n_seen >= s->pen.last_n) recount(s, s->hist[slot], -1);
        s->hist[slot] = token;
    }
    s->n_seen++;
    recount(s, token, +1);
}

/* The logits with the penalties applied (the input itself when there is nothing to change). The
 * distinct tokens are visited in the order they entered the window; each logit changes alone, so
 * the order does not matter. */
static const float *penalized(bl_sampler *s, const float *logits) {
    if (!s->count || s->n_present == 0) return logits;
    memcpy(s->adjusted, logits, (size_t)s->vocab * sizeof *logits);
    for (int k = 0; k < s->n_present; k++) {
        const int t = s->present[k];
        float l = s->adjusted[t];
        l = l > 0.0f ? l / s->pen.repeat : l * s->pen.repeat;
        l -= (float)s->count[t] * s->pen.frequency + s->pen.presence;
        s->adjusted[t] = isfinite(l) ? l : l > 0.0f ? FLT_MAX : -FLT_MAX; /* huge penalties */
    }
    return s->adjusted;
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static int by_prob_desc(const void *a, const void *b) {
    const struct bl_prob_index *x = a, *y = b;
    if (x->p > y->p) return -1;
    if (x->p < y->p) return 1;
    return x->id - y->id;
}

int bl_sample(bl_sampler *s, const float *logits) {
    const int V = s->vocab;
    for (int i = 0; i < V; i++) /* NaN/Inf would leave no candidate (or a NaN mass) below */
        if (!isfinite(logits[i])) return -1;
    logits = penalized(s, logits);
    if (s->temperature <= 0.0f) return argmax(logits, V);
    float mx = logits[argmax(logits, V)];
    double sum = 0.0;
    for (int i = 0; i < V; i++) {
        s->probs[i] = expf((logits[i] - mx) / s->temperature);
        sum += s->probs[i];
    }
    for (int i = 0; i < V; i++) s->probs[i] = (float)(s->probs[i] / sum);
    float r = bl_rng_uniform(&s->rng);
    if (s->top_p >= 1.0f) {
        double cdf = 0.0;
        for (int i = 0; i < V; i++) {
            cdf += s->probs[i];
            if (r < cdf) return i;
        }
        return V - 1;
    }
    /* Nucleus: keep the smallest prefix of tokens by probability whose mass exceeds top_p. */
    int n = 0;
    const float cutoff = (1.0f - s->top_p) / (float)(V - 1 > 0 ? V - 1 : 1);
    for (int i = 0; i < V; i++)
        if (s->probs[i] >= cutoff) s->cand[n++] = (struct bl_prob_index){s->probs[i], i};
    if (n == 0) /* cannot happen with finite logits (the maximum has probability >= 1/V) */
        return argmax(logits, V);
    qsort(s->cand, (size_t)n, sizeof *s->cand, by_prob_desc);
    double mass = 0.0;
    int last = n - 1;
    for (int i = 0; i < n; i++) {
        mass += s->cand[i].p;
        if (mass > s->top_p) {
            last = i;
            break;
        }
    }
    double target = r * mass, cdf = 0.0;
    for (int i = 0; i <= last; i++) {
        cdf += s->cand[i].p;
        if (target < cdf) return s->cand[i].id;
    }
    return s->cand[last].id;
}
