/* Sampling penalties (bl_sampler_set_penalties / bl_sampler_accept): the formulas of llama.cpp's
 * penalties sampler and OpenAI's presence and frequency penalties on hand-made logits, the window
 * of the last N tokens, greedy and sampled decoding through them, and the refusal of bad values. */
#include <math.h>
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

int main(void) {
    TEST_RUN(test_formulas);
    TEST_RUN(test_window);
    TEST_RUN(test_refused_and_huge);
    return test_summary();
}
