/* Token sampling: penalties on the recent text, then greedy, temperature, nucleus (top-p). */
#include "bitllm/model.h"
#include "bitllm/tensor.h"

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
    s->cand = malloc(2 * (size_t)vocab * sizeof *s->cand); /* candidates, sort scratch */
    if (!s->probs || !s->cand) {
        bl_sampler_free(s);
        return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    }
    return BL_OK;
}

static void free_penalties(bl_sampler *s) {
    free(s->count), free(s->where), free(s->present), free(s->hist);
    s->count = s->where = s->present = NULL;
    s->hist = NULL;
    s->n_present = 0;
    s->n_seen = 0;
}

static void free_bias(bl_sampler *s) {
    free(s->bias_id), free(s->bias);
    s->bias_id = NULL;
    s->bias = NULL;
    s->n_bias = 0;
}

void bl_sampler_free(bl_sampler *s) {
    free(s->probs);
    free(s->cand);
    free(s->adjusted);
    s->probs = NULL;
    s->cand = NULL;
    s->adjusted = NULL;
    free_penalties(s);
    free_bias(s);
}

/* The buffer of adjusted logits, once biases or penalties need it. */
static bool need_adjusted(bl_sampler *s) {
    if (!s->adjusted) s->adjusted = malloc((size_t)s->vocab * sizeof *s->adjusted);
    return s->adjusted != NULL;
}

bl_status bl_sampler_set_bias(bl_sampler *s, const int32_t *ids, const float *bias, int n,
                              bl_err *err) {
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= s->vocab)
            return bl_fail(err, BL_ERR_ARG, "logit bias for token %d, outside the vocabulary of "
                           "%d", (int)ids[i], s->vocab);
        if (!isfinite(bias[i]))
            return bl_fail(err, BL_ERR_ARG, "logit bias of token %d must be finite, got %g",
                           (int)ids[i], (double)bias[i]);
    }
    free_bias(s);
    if (n == 0) return BL_OK;
    s->bias_id = malloc((size_t)n * sizeof *s->bias_id);
    s->bias = malloc((size_t)n * sizeof *s->bias);
    if (!s->bias_id || !s->bias || !need_adjusted(s)) {
        free_bias(s);
        return bl_fail(err, BL_ERR_NOMEM, "sampler logit bias: out of memory");
    }
    memcpy(s->bias_id, ids, (size_t)n * sizeof *ids);
    memcpy(s->bias, bias, (size_t)n * sizeof *bias);
    s->n_bias = n;
    return BL_OK;
}

bl_status bl_sampler_set_filters(bl_sampler *s, int top_k, float min_p, bl_err *err) {
    if (top_k < 0) return bl_fail(err, BL_ERR_ARG, "top-k must be >= 0 (0 = off), got %d", top_k);
    if (!(min_p >= 0.0f && min_p <= 1.0f))
        return bl_fail(err, BL_ERR_ARG, "min-p must be in [0, 1] (0 = off), got %g",
                       (double)min_p);
    s->top_k = top_k;
    s->min_p = min_p;
    return BL_OK;
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
    if (p->last_n > 0) s->hist = malloc((size_t)p->last_n * sizeof *s->hist);
    if (!s->count || !s->where || !s->present || !need_adjusted(s) ||
        (p->last_n > 0 && !s->hist)) {
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

/* l, or the largest finite float of its sign when a huge bias or penalty overflowed it. */
static float finite_or_max(float l) { return isfinite(l) ? l : l > 0.0f ? FLT_MAX : -FLT_MAX; }

/* The logits with the biases, then the penalties applied (the input itself when there is nothing
 * to change). The distinct tokens are visited in the order they entered the window; each logit
 * changes alone, so the order does not matter. A bias given twice for one token adds up. */
static const float *penalized(bl_sampler *s, const float *logits) {
    const bool pen = s->count && s->n_present > 0;
    if (!pen && s->n_bias == 0) return logits;
    memcpy(s->adjusted, logits, (size_t)s->vocab * sizeof *logits);
    for (int k = 0; k < s->n_bias; k++) {
        const float l = s->adjusted[s->bias_id[k]] + s->bias[k];
        s->adjusted[s->bias_id[k]] = finite_or_max(l);
    }
    for (int k = 0; pen && k < s->n_present; k++) {
        const int t = s->present[k];
        float l = s->adjusted[t];
        l = l > 0.0f ? l / s->pen.repeat : l * s->pen.repeat;
        l -= (float)s->count[t] * s->pen.frequency + s->pen.presence;
        s->adjusted[t] = finite_or_max(l);
    }
    return s->adjusted;
}

/* The bits of a float, for the order of positive floats and the exp's bit operations. */
static uint32_t bits_of(float x) {
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    return b;
}

/* The maximum of n >= 1 floats (finite): sixteen running maxima as straight-line code the
 * compiler vectorizes. The maximum of a set does not depend on the order in which it is taken,
 * so this is the same value a scalar loop finds. */
static float max_of(const float *x, int n) {
    float m[16];
    for (int k = 0; k < 16; k++) m[k] = x[0];
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        float v[16];
        memcpy(v, x + i, sizeof v);
        for (int k = 0; k < 16; k++) m[k] = v[k] > m[k] ? v[k] : m[k];
    }
    for (; i < n; i++) m[0] = x[i] > m[0] ? x[i] : m[0];
    float r = m[0];
    for (int k = 1; k < 16; k++) r = m[k] > r ? m[k] : r;
    return r;
}

/* The lowest index holding the value mx (the maximum of x, so one exists). Greedy decoding used
 * to keep the best index of a running comparison, a chain of dependent loads (~4.5 ns a logit,
 * 0.14 ms for 32000); the maximum first and then this search is ~0.3 ns a logit. */
static int first_index_of(const float *x, int n, float mx) {
    for (int i = 0; i < n; i++)
        if (x[i] == mx) return i;
    return 0;
}

/* Sorts n candidates (given in increasing id order) by probability, highest first, ties in
 * increasing id — the order the nucleus is taken in. A stable radix sort on the bits of p (the
 * probabilities are positive, so their bits order like their values), eight bits a pass, passes
 * whose digit is the same for all skipped; tmp has room for n. Returns the array holding the
 * result (a or tmp). A comparison sort of a 32000-token vocabulary took ~2.7 ms a token. */
static struct bl_prob_index *sort_by_prob(struct bl_prob_index *a, struct bl_prob_index *tmp,
                                          int n) {
    for (int shift = 0; shift < 32; shift += 8) {
        int pos[257] = {0};
        for (int i = 0; i < n; i++) pos[1 + ((~bits_of(a[i].p) >> shift) & 255u)]++;
        bool trivial = false;
        for (int d = 1; d <= 256 && !trivial; d++) trivial = pos[d] == n;
        if (trivial) continue;
        for (int d = 1; d <= 256; d++) pos[d] += pos[d - 1];
        for (int i = 0; i < n; i++) tmp[pos[(~bits_of(a[i].p) >> shift) & 255u]++] = a[i];
        struct bl_prob_index *t = a;
        a = tmp;
        tmp = t;
    }
    return a;
}

/* The filters (top_p < 1, top_k > 0 or min_p > 0) on probs, and the draw r. In the order of
 * sort_by_prob, the tokens kept are the first L = min(K, L_p, L_m): K = top_k (or all), L_p the
 * shortest prefix of those K whose mass exceeds top_p times their mass (top_p itself without
 * top_k: the whole mass is 1), L_m the tokens at least min_p times as likely as the most likely
 * one (p_max); the token is the first of them whose running mass exceeds r times theirs.
 *
 * Only a prefix of the order is sorted: a histogram of the mass and count by the top 11 bits of p
 * (exponent and 3 mantissa bits, monotonic in p) finds the bucket where the count reaches top_k,
 * or else where the mass passes top_p, and the tokens from that bucket up are sorted. Every token
 * left out is smaller than every one kept, so the sorted ones are exactly the first ones of the
 * whole order, and the prefix sums are the same sums in the same order. Should the mass not pass
 * top_p within them (the histogram's sums are taken in another order, hence the margin), every
 * token is sorted. Without top_k, tokens below (1 − top_p)/(V − 1) never matter (the others
 * hold more than top_p of the mass) nor, with min_p, those below min_p·p_max; they are left out
 * from the start. Returns -1 when no token passes that cutoff (V = 2 and top_p < 1/2, say). */
static int sample_filtered(bl_sampler *s, float r, float p_max) {
    const int V = s->vocab, K = s->top_k > 0 && s->top_k < V ? s->top_k : V;
    const float *probs = s->probs;
    float cutoff = 0.0f;
    if (s->top_k <= 0) {
        if (s->top_p < 1.0f) cutoff = (1.0f - s->top_p) / (float)(V - 1 > 0 ? V - 1 : 1);
        const float pm = s->min_p * p_max;
        if (pm > cutoff) cutoff = pm;
    }
    enum { BUCKETS = 1024 }; /* p <= 1: bits >> 20 <= 0x3f8 */
    /* four histograms for the tokens i mod 4, so that neighbours in one bucket do not wait for
     * each other's sums; branch-free: a token below the cutoff goes to bucket 0 (which holds
     * only p < 2^-126: no token there is ever kept, as its mass could not pass top_p) */
    double mass_b[4][BUCKETS];
    int count_b[4][BUCKETS];
    memset(mass_b, 0, sizeof mass_b);
    memset(count_b, 0, sizeof count_b);
    for (int i = 0; i < V; i++) {
        const uint32_t k = probs[i] >= cutoff ? bits_of(probs[i]) >> 20 : 0;
        mass_b[i & 3][k] += probs[i];
        count_b[i & 3][k]++;
    }
    uint32_t lo = 1;
    double acc = 0.0;
    int cnt = 0;
    for (int k = BUCKETS - 1; k >= 1; k--) {
        acc += (mass_b[0][k] + mass_b[1][k]) + (mass_b[2][k] + mass_b[3][k]);
        cnt += (count_b[0][k] + count_b[1][k]) + (count_b[2][k] + count_b[3][k]);
        if (K < V ? cnt >= K : s->top_p < 1.0f && acc > (double)s->top_p + 1e-6) {
            lo = (uint32_t)k;
            break;
        }
    }
    for (;;) {
        int n = 0;
        for (int i = 0; i < V; i++) { /* branch-free: about half are taken in a flat one */
            s->cand[n] = (struct bl_prob_index){probs[i], i};
            n += (probs[i] >= cutoff) & (bits_of(probs[i]) >> 20 >= lo);
        }
        if (n == 0) return -1;
        const struct bl_prob_index *c = sort_by_prob(s->cand, s->cand + V, n);
        int last = (K < n ? K : n) - 1;
        if (s->top_p < 1.0f) {
            double goal = s->top_p;
            if (K < V) {
                double mk = 0.0;
                for (int i = 0; i <= last; i++) mk += c[i].p;
                goal *= mk;
            }
            double mass = 0.0;
            int lp = -1;
            for (int i = 0; i <= last; i++)
                if ((mass += c[i].p) > goal) {
                    lp = i;
                    break;
                }
            if (lp < 0 && lo > 1 && K == V) {
                lo = 1; /* the histogram's margin was not enough: take every candidate */
                continue;
            }
            if (lp >= 0) last = lp;
        }
        const float pm = s->min_p * p_max;
        while (last > 0 && c[last].p < pm) last--; /* the most likely token always passes */
        double mass = 0.0;
        for (int i = 0; i <= last; i++) mass += c[i].p;
        double target = r * mass, cdf = 0.0;
        for (int i = 0; i <= last; i++) {
            cdf += c[i].p;
            if (target < cdf) return c[i].id;
        }
        return c[last].id;
    }
}

static float float_of(uint32_t b) {
    float x;
    memcpy(&x, &b, sizeof x);
    return x;
}

/* e^x for x <= 0 (x = -Inf included), in basic operations without branches, so the compiler's
 * vectorized loop and the scalar tail give the same bits on every x86-64 (a sampled token must not
 * depend on the CPU): n = round(x·log2 e) by the 1.5·2^23 shift, r = x − n·ln 2 with ln 2 in two
 * parts (the first product and difference exact), e^r = 1 + r + r²·P(r) with the degree-5
 * polynomial of the forward pass's vector exp (kernels/x86/act_avx512.c), times 2^n built from its
 * bits. Below −87 (e^x < 2^-125) the result is 0. Within 2 ulp of e^x; glibc's expf, called once
 * a logit, was ~3 of the ~5 ns a logit that sampling took. */
static inline float exp_nonpos(float x) {
    const uint32_t keep = -(uint32_t)(x > -87.0f); /* all ones, or 0 below −87 */
    const float xc = float_of((bits_of(x) & keep) | (bits_of(-87.0f) & ~keep));
    const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float q = 1.9875691500e-4f;
    q = q * r + 1.3981999507e-3f;
    q = q * r + 8.3334519073e-3f;
    q = q * r + 4.1665795894e-2f;
    q = q * r + 1.6666665459e-1f;
    q = q * r + 5.0000001201e-1f;
    const float y = q * (r * r) + (r + 1.0f);
    const float two_n = float_of((uint32_t)((int32_t)n + 127) << 23);
    return float_of(bits_of(y * two_n) & keep);
}

/* p = softmax(l / temperature) with mx = max l: the exponentials, their sum in double as 8
 * interleaved partial sums added pairwise (a fixed order), then one multiplication by its
 * inverse — each loop vectorized at -O2 up to the last V mod 8 logits (a running double sum and a
 * division per logit were a dependent chain and a divider's throughput). Returns the largest
 * probability: the maximum's exponential is exactly 1 (exp_nonpos(0)), so it is the inverse. */
static float to_probs(const float *restrict l, int V, float mx, float temperature,
                      float *restrict p) {
    const int V8 = V & ~7;
    for (int i = 0; i < V8; i++) p[i] = exp_nonpos((l[i] - mx) / temperature);
    for (int i = V8; i < V; i++) p[i] = exp_nonpos((l[i] - mx) / temperature);
    double acc[8] = {0};
    for (int i = 0; i < V8; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += p[i + k];
    for (int i = V8; i < V; i++) acc[i - V8] += p[i];
    const double inv = 1.0 / (((acc[0] + acc[4]) + (acc[2] + acc[6])) +
                              ((acc[1] + acc[5]) + (acc[3] + acc[7])));
    for (int i = 0; i < V8; i++) p[i] = (float)(p[i] * inv);
    for (int i = V8; i < V; i++) p[i] = (float)(p[i] * inv);
    return (float)inv;
}

int bl_sample(bl_sampler *s, const float *logits) {
    const int V = s->vocab;
    /* a NaN/Inf would leave no candidate, or a NaN mass, below */
    if (bl_dtype_info(BL_DT_F32)->find_nonfinite(logits, (size_t)V) < (size_t)V) return -1;
    const float *l = penalized(s, logits); /* finite: huge penalties are clamped */
    const float mx = max_of(l, V);
    if (s->temperature <= 0.0f) return first_index_of(l, V, mx);
    const float p_max = to_probs(l, V, mx, s->temperature, s->probs);
    float r = bl_rng_uniform(&s->rng);
    if (s->top_p >= 1.0f && s->top_k <= 0 && s->min_p <= 0.0f) {
        double cdf = 0.0;
        for (int i = 0; i < V; i++) {
            cdf += s->probs[i];
            if (r < cdf) return i;
        }
        return V - 1;
    }
    const int t = sample_filtered(s, r, p_max);
    return t >= 0 ? t : first_index_of(l, V, mx);
}
