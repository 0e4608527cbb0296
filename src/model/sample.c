/* Token sampling: greedy, temperature, nucleus (top-p). */
#include "bitllm/model.h"

#include <math.h>
#include <stdlib.h>

bl_status bl_sampler_init(bl_sampler *s, int vocab, float temperature, float top_p,
                          uint64_t seed, bl_err *err) {
    s->probs = NULL;
    s->cand = NULL;
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

void bl_sampler_free(bl_sampler *s) {
    free(s->probs);
    free(s->cand);
    s->probs = NULL;
    s->cand = NULL;
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
