/* Sampling penalties (bl_sampler_set_penalties / bl_sampler_accept): the formulas of llama.cpp's
 * penalties sampler and OpenAI's presence and frequency penalties on hand-made logits, logit
 * biases, the window
 * of the last N tokens, greedy and sampled decoding through them, and the refusal of bad values.
 * Then the sampling itself against its specification: the probabilities against a double-precision
 * softmax, and every token drawn against a plain implementation of greedy, temperature and nucleus
 * sampling (a full sort) given the same probabilities and the same uniform draw. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bitllm/model.h"
#include "test.h"

enum { V = 6 };

/* Greedy choice under penalties p after the tokens hist[0..n). */
static int greedy_after(const bl_penalties *p, const int *hist, int n, const float *logits) {
    bl_sampler s;
    bl_err err = {0};
    if (bl_sampler_init(&s, V, 0.0f, 1.0f, 1, &err) != BL_OK) return -2;
    if (bl_sampler_set_penalties(&s, p, &err) != BL_OK) {
        bl_sampler_free(&s);
        return -3;
    }
    for (int i = 0; i < n; i++) bl_sampler_accept(&s, hist[i]);
    int t = bl_sample(&s, logits);
    bl_sampler_free(&s);
    return t;
}

static void test_formulas(void) {
    /* token 0 leads by 1.0; it occurred twice, token 1 once */
    const float lg[V] = {3.0f, 2.0f, 1.5f, -1.0f, 0.5f, 0.0f};
    const int hist[] = {0, 1, 0};
    bl_penalties off = BL_PENALTIES_OFF;
    CHECK(!bl_penalties_active(&off));
    CHECK(greedy_after(&off, hist, 3, lg) == 0);
    /* presence: 3 − 0.9 = 2.1 still beats 2 − 0.9 = 1.1 and 1.5 */
    bl_penalties pr = {1.0f, 0.9f, 0.0f, 64};
    CHECK(greedy_after(&pr, hist, 3, lg) == 0);
    /* presence 1.6: 1.4 and 0.4 against 1.5, which did not occur: token 2 */
    pr.presence = 1.6f;
    CHECK(greedy_after(&pr, hist, 3, lg) == 2);
    /* frequency 0.6: 3 − 1.2 = 1.8 against 2 − 0.6 = 1.4 and 1.5: still 0; 0.8: 1.4, 1.2, 1.5 */
    bl_penalties fr = {1.0f, 0.0f, 0.6f, 64};
    CHECK(greedy_after(&fr, hist, 3, lg) == 0);
    fr.frequency = 0.8f;
    CHECK(greedy_after(&fr, hist, 3, lg) == 2);
    /* repeat 2.5: positive logits divided, 1.2 and 0.8 against 1.5 */
    bl_penalties rp = {2.5f, 0.0f, 0.0f, 64};
    CHECK(greedy_after(&rp, hist, 3, lg) == 2);
    /* a negative logit is multiplied: token 3's -0.1 becomes -0.3 and token 4's -0.2 wins */
    const float neg[V] = {-1.0f, -2.0f, -3.0f, -0.1f, -0.2f, -0.3f};
    bl_penalties mul = {3.0f, 0.0f, 0.0f, 64};
    const int h3[] = {3};
    CHECK(greedy_after(&mul, h3, 1, neg) == 4);
    /* the exact penalized values, through a one-candidate nucleus: temperature sampling with
     * top_p tiny always returns the argmax of the penalized logits */
    bl_sampler s;
    bl_err err = {0};
    REQUIRE(bl_sampler_init(&s, V, 1.0f, 1e-6f, 7, &err) == BL_OK);
    bl_penalties both = {2.0f, 0.25f, 0.5f, 64};
    REQUIRE(bl_sampler_set_penalties(&s, &both, &err) == BL_OK);
    for (int i = 0; i < 3; i++) bl_sampler_accept(&s, hist[i]);
    /* token 0: 3/2 − 2·0.5 − 0.25 = 0.25; token 1: 2/2 − 0.5 − 0.25 = 0.25; token 2: 1.5 */
    for (int k = 0; k < 20; k++) CHECK(bl_sample(&s, lg) == 2);
    CHECK_NEAR(s.adjusted[0], 0.25f, 0.0f);
    CHECK_NEAR(s.adjusted[1], 0.25f, 0.0f);
    CHECK_NEAR(s.adjusted[2], 1.5f, 0.0f);
    CHECK_NEAR(s.adjusted[3], -1.0f, 0.0f);
    bl_sampler_free(&s);
}

static void test_window(void) {
    const float lg[V] = {3.0f, 2.0f, 1.5f, -1.0f, 0.5f, 0.0f};
    bl_penalties p = {1.0f, 5.0f, 0.0f, 2};
    /* token 0 left the 2-token window: no penalty on it */
    const int h[] = {0, 1, 4};
    CHECK(greedy_after(&p, h, 3, lg) == 0);
    /* ... but it is in a 3-token window, and in the whole text */
    p.last_n = 3;
    CHECK(greedy_after(&p, h, 3, lg) == 2);
    p.last_n = -1;
    CHECK(greedy_after(&p, h, 3, lg) == 2);
    /* a window of 0 turns the penalties off */
    p.last_n = 0;
    CHECK(!bl_penalties_active(&p));
    CHECK(greedy_after(&p, h, 3, lg) == 0);
    /* counts follow the window: token 1 in and out many times, never negative or stale */
    bl_sampler s;
    bl_err err = {0};
    REQUIRE(bl_sampler_init(&s, V, 0.0f, 1.0f, 1, &err) == BL_OK);
    bl_penalties f = {1.0f, 0.0f, 1.0f, 4};
    REQUIRE(bl_sampler_set_penalties(&s, &f, &err) == BL_OK);
    const int seq[] = {1, 1, 2, 1, 3, 3, 3, 3, 1, 2};
    int want[V];
    for (int i = 0; i < 10; i++) {
        bl_sampler_accept(&s, seq[i]);
        memset(want, 0, sizeof want);
        for (int j = i - 3 < 0 ? 0 : i - 3; j <= i; j++) want[seq[j]]++;
        for (int t = 0; t < V; t++) CHECK_MSG(s.count[t] == want[t], "step %d token %d", i, t);
    }
    bl_sampler_accept(&s, -1); /* ignored, as are ids past the vocabulary */
    bl_sampler_accept(&s, V);
    CHECK(s.n_seen == 10);
    bl_sampler_free(&s);
}

static void test_refused_and_huge(void) {
    bl_sampler s;
    bl_err err = {0};
    REQUIRE(bl_sampler_init(&s, V, 0.0f, 1.0f, 1, &err) == BL_OK);
    const bl_penalties bad[] = {{0.0f, 0, 0, 64}, {-1.0f, 0, 0, 64}, {NAN, 0, 0, 64},
                                {INFINITY, 0, 0, 64}, {1.0f, NAN, 0, 64}, {1.0f, 0, INFINITY, 64},
                                {1.0f, 0, 0, -2}};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        err.msg[0] = 0;
        CHECK_MSG(bl_sampler_set_penalties(&s, &bad[k], &err) == BL_ERR_ARG, "case %zu", k);
        CHECK(strstr(err.msg, "penalt") != NULL || strstr(err.msg, "window") != NULL);
    }
    /* penalties too large for f32 stay finite: the token is pushed to the bottom, no -1 */
    const bl_penalties huge = {1e-38f, 3e38f, 3e38f, 64};
    REQUIRE(bl_sampler_set_penalties(&s, &huge, &err) == BL_OK);
    bl_sampler_accept(&s, 0);
    bl_sampler_accept(&s, 0);
    const float lg[V] = {3.0f, 2.0f, 1.5f, -1.0f, 0.5f, 0.0f};
    CHECK(bl_sample(&s, lg) == 1);
    CHECK(isfinite(s.adjusted[0]));
    bl_sampler_free(&s);
}

/* Logit biases (bl_sampler_set_bias): added before the penalties, exactly; +100 forces a token
 * and -100 bans it, greedy and sampled; a bias given twice adds up; removing them restores the
 * input; bad ids and non-finite biases are refused. */
static void test_bias(void) {
    const float lg[V] = {3.0f, 2.0f, 1.5f, -1.0f, 0.5f, 0.0f};
    bl_sampler s;
    bl_err err = {0};
    REQUIRE(bl_sampler_init(&s, V, 0.0f, 1.0f, 1, &err) == BL_OK);
    const int32_t ban[1] = {0};
    const float minus[1] = {-100.0f};
    REQUIRE(bl_sampler_set_bias(&s, ban, minus, 1, &err) == BL_OK);
    CHECK(bl_sample(&s, lg) == 1);
    CHECK(s.adjusted[0] == 3.0f - 100.0f && s.adjusted[1] == 2.0f);
    /* a token given twice: 1.5 + 0.75 + 1.0 = 3.25 beats token 0's 3.0; token 3 moves alone */
    const int32_t two[3] = {2, 2, 3};
    const float b2[3] = {0.75f, 1.0f, 0.25f};
    REQUIRE(bl_sampler_set_bias(&s, two, b2, 3, &err) == BL_OK);
    CHECK(bl_sample(&s, lg) == 2 && s.adjusted[2] == 3.25f && s.adjusted[3] == -0.75f);
    /* before the penalties: token 2 biased to 3.25 then, having occurred, divided by 2 */
    const bl_penalties rp = {2.0f, 0.0f, 0.0f, 64};
    REQUIRE(bl_sampler_set_penalties(&s, &rp, &err) == BL_OK);
    bl_sampler_accept(&s, 2);
    CHECK(bl_sample(&s, lg) == 0 && s.adjusted[2] == 1.625f);
    const bl_penalties off = BL_PENALTIES_OFF;
    REQUIRE(bl_sampler_set_penalties(&s, &off, &err) == BL_OK);
    REQUIRE(bl_sampler_set_bias(&s, NULL, NULL, 0, &err) == BL_OK);
    CHECK(bl_sample(&s, lg) == 0 && s.n_bias == 0);
    bl_sampler_free(&s);
    /* sampled: +100 on token 5 takes every draw at temperature 1 */
    REQUIRE(bl_sampler_init(&s, V, 1.0f, 1.0f, 3, &err) == BL_OK);
    const int32_t force[1] = {5};
    const float plus[1] = {100.0f};
    REQUIRE(bl_sampler_set_bias(&s, force, plus, 1, &err) == BL_OK);
    for (int k = 0; k < 50; k++) CHECK(bl_sample(&s, lg) == 5);
    const int32_t bad_id[1] = {V};
    const float nan_b[1] = {NAN};
    err.msg[0] = 0;
    CHECK(bl_sampler_set_bias(&s, bad_id, plus, 1, &err) == BL_ERR_ARG && strstr(err.msg, "token 6"));
    CHECK(bl_sampler_set_bias(&s, force, nan_b, 1, &err) == BL_ERR_ARG && strstr(err.msg, "finite"));
    CHECK(s.n_bias == 1); /* a refused call leaves the biases as they were */
    bl_sampler_free(&s);
}

/* Logits of kind k: flat, Gaussian-like, integer ties, one dominant token, all equal. */
static void make_logits(float *l, int nv, int kind, unsigned seed) {
    bl_rng g;
    bl_rng_seed(&g, seed);
    for (int i = 0; i < nv; i++) {
        const float u = bl_rng_uniform(&g);
        switch (kind) {
        case 0: l[i] = (u - 0.5f) * 8.0f; break;
        case 1: { /* sum of 4 uniforms: roughly normal, standard deviation ~3 */
            float t = u + bl_rng_uniform(&g) + bl_rng_uniform(&g) + bl_rng_uniform(&g);
            l[i] = (t - 2.0f) * 5.2f;
            break;
        }
        case 2: l[i] = (float)((int)(u * 5.0f)); break;
        case 3: l[i] = (u - 0.5f) * 2.0f + (i == nv / 3 ? 25.0f : 0.0f); break;
        default: l[i] = 0.25f; break;
        }
    }
}

static int by_p_desc(const void *a, const void *b) {
    const struct bl_prob_index *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return x->id - y->id;
}

/* The specification, given the probabilities p and the uniform draw r. With no filter (top_p 1,
 * top_k 0, min_p 0) the first token whose running mass, in id order, exceeds r. Otherwise: the
 * tokens sorted by p descending, ties by id (without top_k only those with p >= (1 − top_p)/(V − 1)
 * and p >= min_p·p_max, which cannot change the result), the first K = top_k of them (all without
 * top_k), then the shortest prefix whose mass exceeds top_p times theirs (top_p itself without
 * top_k; all of them if none does), then those with p >= min_p·p_max, and the first of what is
 * left whose running mass exceeds r times its mass; with no token left after the cutoffs (a tiny
 * vocabulary and top_p near 0) the most likely token, `greedy`. */
typedef struct {
    float top_p;
    int top_k;
    float min_p;
} filters;

static int reference_pick(const float *p, int nv, filters f, float r, struct bl_prob_index *c,
                          int greedy) {
    double cdf = 0.0;
    if (f.top_p >= 1.0f && f.top_k == 0 && f.min_p == 0.0f) {
        for (int i = 0; i < nv; i++)
            if (r < (cdf += p[i])) return i;
        return nv - 1;
    }
    float p_max = 0.0f;
    for (int i = 0; i < nv; i++) p_max = p[i] > p_max ? p[i] : p_max;
    float cutoff = 0.0f;
    if (f.top_k == 0) {
        if (f.top_p < 1.0f) cutoff = (1.0f - f.top_p) / (float)(nv > 1 ? nv - 1 : 1);
        if (f.min_p * p_max > cutoff) cutoff = f.min_p * p_max;
    }
    int n = 0;
    for (int i = 0; i < nv; i++)
        if (p[i] >= cutoff) c[n++] = (struct bl_prob_index){p[i], i};
    if (n == 0) return greedy;
    qsort(c, (size_t)n, sizeof *c, by_p_desc);
    const int K = f.top_k > 0 && f.top_k < nv ? f.top_k : nv;
    int last = (K < n ? K : n) - 1;
    if (f.top_p < 1.0f) {
        double goal = f.top_p, mass = 0.0;
        if (K < nv) {
            double mk = 0.0;
            for (int i = 0; i <= last; i++) mk += c[i].p;
            goal *= mk;
        }
        for (int i = 0; i <= last; i++)
            if ((mass += c[i].p) > goal) {
                last = i;
                break;
            }
    }
    while (last > 0 && c[last].p < f.min_p * p_max) last--;
    double mass = 0.0;
    for (int i = 0; i <= last; i++) mass += c[i].p;
    for (int i = 0; i <= last; i++)
        if (r * mass < (cdf += c[i].p)) return c[i].id;
    return c[last].id;
}

/* One configuration, DRAWS draws: every token against reference_pick given the sampler's own
 * probabilities and the same uniform draw, and those probabilities against a softmax in double
 * of the same float inputs. Counts into the totals. */
typedef struct {
    int checked, bad_tok, bad_p;
    double worst;
} spec_totals;

static void check_config(float *l, int nv, float T, filters f, uint64_t seed,
                         struct bl_prob_index *c, spec_totals *tot) {
    enum { DRAWS = 3 };
    bl_sampler s;
    bl_err err = {0};
    if (bl_sampler_init(&s, nv, T, f.top_p, seed, &err) != BL_OK ||
        bl_sampler_set_filters(&s, f.top_k, f.min_p, &err) != BL_OK) {
        tot->bad_tok++;
        return;
    }
    bl_rng twin;
    bl_rng_seed(&twin, seed);
    for (int d = 0; d < DRAWS; d++) {
        l[d % nv] += 0.125f; /* a different distribution each draw */
        float mx = l[0];
        int first = 0;
        for (int i = 1; i < nv; i++)
            if (l[i] > mx) mx = l[i], first = i;
        const int tok = bl_sample(&s, l);
        int want = first;
        if (T > 0.0f) {
            const float r = bl_rng_uniform(&twin);
            want = reference_pick(s.probs, nv, f, r, c, first);
            double z = 0.0;
            for (int i = 0; i < nv; i++) z += exp((double)((l[i] - mx) / T));
            for (int i = 0; i < nv; i++) {
                const double q = exp((double)((l[i] - mx) / T)) / z;
                const double e = fabs(s.probs[i] - q);
                /* ~4 float ulp: exp 2, the sum and the division 1 */
                if (e > 5e-7 * q + 1e-30) tot->bad_p++;
                if (q > 1e-30 && e / q > tot->worst) tot->worst = e / q;
            }
        }
        if (tok != want && tot->bad_tok++ < 10)
            printf("  V %d, T %g, top_p %g, top_k %d, min_p %g, draw %d: %d, want %d\n", nv,
                   (double)T, (double)f.top_p, f.top_k, (double)f.min_p, d, tok, want);
        tot->checked++;
    }
    bl_sampler_free(&s);
}

static void test_against_specification(void) {
    static const int sizes[] = {1, 2, 7, 100, 1000, 32000};
    static const float temps[] = {0.0f, 0.3f, 1.0f, 2.5f};
    static const float tops[] = {1.0f, 0.99f, 0.9f, 0.5f, 1e-6f};
    static const int top_ks[] = {0, 1, 5, 50};
    static const float min_ps[] = {0.0f, 0.05f, 0.5f};
    enum { MAXV = 32000 };
    float *l = malloc(sizeof(float) * MAXV);
    struct bl_prob_index *c = malloc(sizeof *c * MAXV);
    REQUIRE(l && c);
    spec_totals tot = {0};
    for (size_t vi = 0; vi < sizeof sizes / sizeof *sizes; vi++)
        for (int kind = 0; kind < 5; kind++) {
            const int nv = sizes[vi];
            const unsigned lseed = (unsigned)(vi * 100 + (size_t)kind);
            /* temperature and top_p alone */
            for (size_t ti = 0; ti < sizeof temps / sizeof *temps; ti++)
                for (size_t pi = 0; pi < sizeof tops / sizeof *tops; pi++) {
                    if (temps[ti] == 0.0f && pi > 0) continue; /* greedy ignores the filters */
                    make_logits(l, nv, kind, lseed);
                    check_config(l, nv, temps[ti], (filters){tops[pi], 0, 0.0f},
                                 7 + vi + 10 * ti + 100 * pi, c, &tot);
                }
            /* top_k and min_p, with and without top_p */
            for (size_t ki = 0; ki < sizeof top_ks / sizeof *top_ks; ki++)
                for (size_t mi = 0; mi < sizeof min_ps / sizeof *min_ps; mi++)
                    for (int pi = 0; pi < 2; pi++) {
                        if (ki == 0 && mi == 0) continue;
                        make_logits(l, nv, kind, lseed);
                        check_config(l, nv, 1.0f,
                                     (filters){pi ? 0.9f : 1.0f, top_ks[ki], min_ps[mi]},
                                     11 + vi + 10 * ki + 100 * mi + 1000 * (size_t)pi, c, &tot);
                    }
        }
    printf("  %d draws: %d tokens differ from the specification, %d probabilities off by more "
           "than 5e-7 relative (worst %.2g)\n", tot.checked, tot.bad_tok, tot.bad_p, tot.worst);
    CHECK(tot.checked > 3000);
    CHECK(tot.bad_tok == 0);
    CHECK(tot.bad_p == 0);
    free(l);
    free(c);
}

/* What the filters mean, checked by their effect: top_k = 1 and min_p = 1 leave only the most
 * likely token at any temperature; over 20000 draws from five tokens with top_k = 2 only the two
 * most likely appear, in the ratio of their probabilities; min_p = 0.3 leaves exactly the tokens
 * at least 0.3 times as likely as the most likely one. Bad values are refused. */
static void test_filters(void) {
    const float lg[5] = {0.0f, 2.0f, 1.5f, -1.0f, 1.0f}; /* p ∝ 1, 7.39, 4.48, 0.37, 2.72 */
    bl_sampler s;
    bl_err err = {0};
    for (int k = 0; k < 2; k++) {
        REQUIRE(bl_sampler_init(&s, 5, 1.5f, 1.0f, 9, &err) == BL_OK);
        REQUIRE(bl_sampler_set_filters(&s, k ? 0 : 1, k ? 1.0f : 0.0f, &err) == BL_OK);
        int other = 0;
        for (int i = 0; i < 200; i++) other += bl_sample(&s, lg) != 1;
        CHECK(other == 0);
        bl_sampler_free(&s);
    }
    enum { N = 20000 };
    int seen[5] = {0};
    REQUIRE(bl_sampler_init(&s, 5, 1.0f, 1.0f, 5, &err) == BL_OK);
    REQUIRE(bl_sampler_set_filters(&s, 2, 0.0f, &err) == BL_OK);
    for (int i = 0; i < N; i++) seen[bl_sample(&s, lg)]++;
    CHECK(seen[0] == 0 && seen[3] == 0 && seen[4] == 0);
    /* token 1 with probability e^2 / (e^2 + e^1.5) = 0.6225; 4 standard deviations: ±0.0137 */
    CHECK(fabs(seen[1] / (double)N - 0.6225) < 0.0137);
    bl_sampler_free(&s);
    memset(seen, 0, sizeof seen);
    REQUIRE(bl_sampler_init(&s, 5, 1.0f, 1.0f, 6, &err) == BL_OK);
    REQUIRE(bl_sampler_set_filters(&s, 0, 0.3f, &err) == BL_OK); /* e^(l−2) >= 0.3: l >= 0.796 */
    for (int i = 0; i < N; i++) seen[bl_sample(&s, lg)]++;
    CHECK(seen[0] == 0 && seen[3] == 0 && seen[1] > 0 && seen[2] > 0 && seen[4] > 0);
    CHECK(bl_sampler_set_filters(&s, -1, 0.0f, &err) == BL_ERR_ARG);
    CHECK(bl_sampler_set_filters(&s, 0, 1.5f, &err) == BL_ERR_ARG);
    CHECK(bl_sampler_set_filters(&s, 0, NAN, &err) == BL_ERR_ARG);
    bl_sampler_free(&s);
}

/* Ties: greedy takes the lowest id; an infinite temperature makes every token equally likely. */
static void test_ties_and_uniform(void) {
    enum { NV = 1000 };
    float l[NV];
    for (int i = 0; i < NV; i++) l[i] = (float)(i % 7);
    bl_sampler s;
    bl_err err = {0};
    REQUIRE(bl_sampler_init(&s, NV, 0.0f, 1.0f, 1, &err) == BL_OK);
    CHECK(bl_sample(&s, l) == 6);
    for (int i = 0; i < NV; i++) l[i] = i % 7 == 6 ? 0.0f : -1.0f; /* +0 at 6, 13, 20, ... */
    l[6] = -1.0f;
    l[10] = -0.0f; /* +0 and −0 compare equal: the lowest id holding either */
    CHECK(bl_sample(&s, l) == 10);
    bl_sampler_free(&s);
    REQUIRE(bl_sampler_init(&s, NV, INFINITY, 0.5f, 3, &err) == BL_OK);
    CHECK(bl_sample(&s, l) >= 0);
    int equal = 1;
    for (int i = 1; i < NV; i++) equal &= s.probs[i] == s.probs[0];
    CHECK(equal);
    CHECK(fabsf(s.probs[0] * NV - 1.0f) < 1e-5f);
    bl_sampler_free(&s);
}

int main(void) {
    TEST_RUN(test_formulas);
    TEST_RUN(test_window);
    TEST_RUN(test_refused_and_huge);
    TEST_RUN(test_against_specification);
    TEST_RUN(test_ties_and_uniform);
    TEST_RUN(test_filters);
    TEST_RUN(test_bias);
    return test_summary();
}
