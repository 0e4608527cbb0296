/* Zero-shot tasks: the exact lm-eval strings of hand-checked items of every task, the token spans
 * that get scored, truncation, shared-prefix reuse, metrics, and per-item scores of the FP32
 * model against an independent float64 forward pass (tests/ref_model.h). */
#include <sys/stat.h>
#include <unistd.h>

#include "bitllm/tasks.h"
#include "eval/task_internal.h"
#include "ref_model.h"
#include "test.h"

static char data_dir[4096];
static const char *model_path(void) {
    static char p[4096];
    snprintf(p, sizeof p, "%s", test_data_path("models/stories260K/stories260K.gguf"));
    return p;
}

static bl_model *load_model(void) {
    bl_model *m = NULL;
    bl_err err = {0};
    if (!test_file_exists(model_path())) return NULL;
    if (bl_model_load(model_path(), NULL, &m, &err) != BL_OK) {
        fprintf(stderr, "  load: %s\n", err.msg);
        return NULL;
    }
    return m;
}

static bl_task_set *load_task(bl_task_id id, int limit) {
    bl_task_set *s = NULL;
    bl_err err = {0};
    if (bl_task_load(id, data_dir, limit, &s, &err) != BL_OK) {
        fprintf(stderr, "  load %s: %s\n", bl_task_name(id), err.msg);
        return NULL;
    }
    return s;
}

/* Sets holding every hand-checked item, loaded once (parsing whole files is slow under ASan). */
static bl_task_set *cached_sets[BL_TASK_COUNT];
static bl_task_set *cached_task(bl_task_id id, int min_items) {
    /* the highest item the checks below look at, per task */
    static const int reach[BL_TASK_COUNT] = {2, 4, 2, 4079, 3, 2, 4463, 3};
    if (cached_sets[id] && cached_sets[id]->n_items >= min_items) return cached_sets[id];
    bl_task_set_free(cached_sets[id]);
    return cached_sets[id] = load_task(id, min_items > reach[id] ? min_items : reach[id]);
}

#define CHECK_STR(a, b)                                                                      \
    CHECK_MSG(strcmp((a), (b)) == 0, "\n    got  \"%s\"\n    want \"%s\"", (a), (b))

/* One hand-checked item: the strings lm-eval builds for it (from the original dataset and the
 * task's YAML / utils.py), written out by hand from the data files. */
typedef struct {
    bl_task_id task;
    int item, gold, n;
    const char *ctx[4], *cont[4];
} expect;

static const expect expected[] = {
    {BL_TASK_PIQA, 0, 0, 2,
     {"Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:",
      "Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:"},
     {" Provide the guinea pig with a cage full of a few inches of bedding made of ripped paper "
      "strips, you will also need to supply it with a water bottle and a food dish.",
      " Provide the guinea pig with a cage full of a few inches of bedding made of ripped jeans "
      "material, you will also need to supply it with a water bottle and a food dish."}},
    /* the official file keeps the trailing spaces of the solutions (so does HF piqa) */
    {BL_TASK_PIQA, 1, 1, 2,
     {"Question: dresser\nAnswer:", "Question: dresser\nAnswer:"},
     {" replace drawer with bobby pin ", " finish, woodgrain with  bobby pin "}},
    {BL_TASK_ARC_EASY, 0, 0, 4,
     {"Question: Which statement best explains why photosynthesis is the foundation of most food "
      "webs?\nAnswer:"},
     {" Sunlight is the source of energy for nearly all ecosystems.",
      " Most ecosystems are found on land instead of in water.",
      " Carbon dioxide is more available than other gases.",
      " The producers in all ecosystems are plants."}},
    {BL_TASK_ARC_EASY, 3, 3, 4,
     {"Question: Which characteristic describes the texture of a kitten's fur?\nAnswer:",
      "Question: Which characteristic describes the texture of a kitten's fur?\nAnswer:",
      "Question: Which characteristic describes the texture of a kitten's fur?\nAnswer:",
      "Question: Which characteristic describes the texture of a kitten's fur?\nAnswer:"},
     {" gray", " warm", " long", " soft"}},
    {BL_TASK_ARC_CHALLENGE, 0, 2, 4,
     {"Question: An astronomer observes that a planet rotates faster after a meteorite impact. "
      "Which is the most likely effect of this increase in rotation?\nAnswer:"},
     {" Planetary density will decrease.", " Planetary years will become longer.",
      " Planetary days will become shorter.", " Planetary gravity will become stronger."}},
    {BL_TASK_ARC_CHALLENGE, 1, 1, 4,
     {"Question: A group of engineers wanted to know how different building designs would "
      "respond during an earthquake. They made several models of buildings and tested each for "
      "its ability to withstand earthquake conditions. Which will most likely result from "
      "testing different building designs?\nAnswer:"},
     {" buildings will be built faster", " buildings will be made safer",
      " building designs will look nicer", " building materials will be cheaper"}},
    /* ctx_b "he" capitalized as lm-eval's ctx_a + " " + ctx_b.capitalize() */
    {BL_TASK_HELLASWAG, 0, 3, 4,
     {"Roof shingle removal: A man is sitting on a roof. He"},
     {" is using wrap to wrap a pair of skis.", " is ripping level tiles off.",
      " is holding a rubik's cube.", " starts pulling up roofing on a roof."}},
    {BL_TASK_HELLASWAG, 1, 3, 4,
     {"Clean and jerk: A lady walks to a barbell. She bends down and grabs the pole. The lady"},
     {" swings and lands in her arms.", " pulls the barbell forward.",
      " pulls a rope attached to the barbell.", " stands and lifts the weight over her head."}},
    /* "[www.kiddio.org]" removed by lm-eval's re.sub, then "  " -> " " */
    {BL_TASK_HELLASWAG, 3505, -1, 4,
     {"Family Life: How to entertain a toddler. Ask the toddler what he or she would like to do "
      "instead of doing what you would like to do.. Visit a site like to find loads of creative "
      "activities for toddlers and preschoolers.. Choose small, simple games like candy land or "
      "chutes and ladders."},
     {NULL}},
    {BL_TASK_WINOGRANDE, 0, 1, 2,
     {"Sarah was a much better surgeon than Maria so Sarah",
      "Sarah was a much better surgeon than Maria so Maria"},
     {" always got the easier cases.", " always got the easier cases."}},
    {BL_TASK_WINOGRANDE, 2, 1, 2,
     {"They were worried the wine would ruin the bed and the blanket, but the blanket",
      "They were worried the wine would ruin the bed and the blanket, but the bed"},
     {" was't ruined.", " was't ruined."}},
    {BL_TASK_BOOLQ, 0, 0, 2, {NULL}, {" no", " yes"}},
    {BL_TASK_BOOLQ, 1, 1, 2, {NULL}, {" no", " yes"}},
    {BL_TASK_LAMBADA, 0, 0, 1, {NULL}, {" signs"}},
    {BL_TASK_LAMBADA, 1, 0, 1, {NULL}, {" Shane"}},
    /* llm-foundry split "... saw the" + "\n\nrecorder"; lm-eval splits the text at its last
     * space */
    {BL_TASK_LAMBADA, 4462, 0, 1, {NULL}, {" the\n\nrecorder"}},
    {BL_TASK_OPENBOOKQA, 1, 0, 4, {"There is most likely going to be fog around:"},
     {" a marsh", " a tundra", " the plains", " a desert"}},
    {BL_TASK_OPENBOOKQA, 2, 2, 4, {"Predators eat", "Predators eat", "Predators eat",
                                   "Predators eat"},
     {" lions", " humans", " bunnies", " grass"}},
};

static bool starts_with(const char *s, const char *head) {
    return strncmp(s, head, strlen(head)) == 0;
}

static bool ends_with(const char *s, const char *tail) {
    size_t k = strlen(s), n = strlen(tail);
    return k >= n && strcmp(s + k - n, tail) == 0;
}

static void check_expected(const bl_task_set *s, const expect *e) {
    REQUIRE(e->item < s->n_items);
    const bl_task_item *it = &s->items[e->item];
    CHECK_MSG(it->n_req == e->n, "%s item %d: %d requests", bl_task_name(e->task), e->item,
              it->n_req);
    if (e->gold >= 0) CHECK(it->gold == e->gold);
    for (int j = 0; j < e->n && j < it->n_req; j++) {
        const char *want_ctx = e->ctx[j] ? e->ctx[j] : e->ctx[0];
        if (want_ctx) CHECK_STR(it->req[j].context, want_ctx);
        if (e->cont[0]) CHECK_STR(it->req[j].continuation, e->cont[j]);
    }
}

static void test_task_strings(void) {
    if (!test_file_exists(test_data_path("data/piqa/valid.jsonl"))) SKIP("task data absent");
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        bl_task_set *s = cached_task(expected[i].task, expected[i].item + 1);
        REQUIRE(s);
        check_expected(s, &expected[i]);
    }
    /* Contexts that the table abbreviates. */
    bl_task_set *s = cached_task(BL_TASK_BOOLQ, 2);
    REQUIRE(s);
    const char *c = s->items[1].req[0].context;
    CHECK(starts_with(c, "Property tax or 'house tax' is a local tax on buildings"));
    CHECK(ends_with(c, "ments falling in the first two brackets.\nQuestion: is house tax and "
                       "property tax are same?\nAnswer:"));
    CHECK_STR(s->items[1].req[0].context, s->items[1].req[1].context);
    c = s->items[0].req[0].context;
    CHECK(starts_with(c, "All biomass goes through at least some of these steps"));
    CHECK(ends_with(c, " producing gasoline.\nQuestion: does ethanol take more energy make that "
                       "produces?\nAnswer:"));
    s = cached_task(BL_TASK_LAMBADA, 4463);
    REQUIRE(s);
    CHECK(ends_with(s->items[0].req[0].context, "confident grin, I don't care about"));
    CHECK(ends_with(s->items[1].req[0].context,
                    "to the dock.\n\n\"I can make it there on my own,"));
    CHECK(ends_with(s->items[4462].req[0].context, "\n\nShe raised her brows when she returned "
                                                   "and saw"));
    CHECK(s->items[0].req[0].norm_chars == 5);
    s = cached_task(BL_TASK_HELLASWAG, 4079);
    REQUIRE(s);
    CHECK_STR(s->items[4078].req[0].continuation,
              " Do not re-enter this being friend process without thoroughly sniffing through "
              "each item you own. If, however, your friends do not seem to want you to try to "
              "make more conversation and/or does this turn you off, snap back by putting right "
              "beside your current name.");
    /* an unclosed "[" stays */
    CHECK(ends_with(s->items[3691].req[2].continuation,
                    "tap the \" [\" button to view the folder screen, then tap the \" upgrade \" "
                    "button in the corner."));
    /* acc_norm lengths: characters of the choice without the delimiter */
    s = cached_task(BL_TASK_PIQA, 2);
    REQUIRE(s);
    CHECK(s->items[1].req[0].norm_chars == 30 && s->items[1].req[0].norm_bytes == 30);
}

static void test_hellaswag_preprocess(void) {
    static const char *const cases[][2] = {
        {"  How to x [title] Do y. [step] Then z.  ", "How to x. Do y. Then z."},
        {"put [a [your name] right beside", "put right beside"},
        {"tap the \" [\" button", "tap the \" [\" button"},
        {"a   b", "a  b"}, /* one pass of "  " -> " ", as str.replace */
        {"[header] How to [title] x", " How to. x"}, /* no strip after the removal */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *o = bl_hellaswag_preprocess(cases[i][0]);
        REQUIRE(o);
        CHECK_STR(o, cases[i][1]);
        free(o);
    }
    static const char *const q[][2] = {
        {"Sumo: A cartoon is shown. two Men", "Sumo: A cartoon is shown. Two men"},
        {"Wikihow: Do this. Then that.", "Wikihow: Do this. Then that."},
        {"X: Intro. \" power dribble", "X: Intro. \" power dribble"},
    };
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) {
        char *o = bl_hellaswag_query(q[i][0]);
        REQUIRE(o);
        CHECK_STR(o, q[i][1]);
        free(o);
    }
}

/* The token spans: context tokens = encode(context) with BOS, continuation tokens = the tail of
 * encode(context + continuation) after as many tokens as the context has, and exactly those are
 * scored. */
static void test_token_spans(void) {
    bl_model *m = load_model();
    if (!m || !test_file_exists(test_data_path("data/piqa/valid.jsonl")))
        SKIP("stories260K or task data absent");
    const int bos = bl_tokenizer_bos(m->tok);
    REQUIRE(bl_tokenizer_add_bos(m->tok) && bos >= 0);
    bl_err err = {0};
    bl_scorer *sc;
    REQUIRE(bl_scorer_new(m, 2048, &sc, &err) == BL_OK);
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        bl_task_set *s = cached_task(expected[i].task, expected[i].item + 1);
        REQUIRE(s);
        const bl_task_item *it = &s->items[expected[i].item];
        for (int j = 0; j < it->n_req; j++) {
            const bl_task_request *r = &it->req[j];
            bl_token_pair p;
            REQUIRE(bl_encode_pair(m->tok, true, r->context, r->continuation, &p, &err) == BL_OK);
            int32_t *c, *w;
            size_t nc, nw;
            char *whole = bl_strfmt("%s%s", r->context, r->continuation);
            REQUIRE(bl_tokenizer_encode(m->tok, r->context, strlen(r->context), true, &c, &nc,
                                        &err) == BL_OK);
            REQUIRE(bl_tokenizer_encode(m->tok, whole, strlen(whole), true, &w, &nw, &err) ==
                    BL_OK);
            CHECK(p.ids[0] == bos);
            CHECK((size_t)p.n_ctx == nc && (size_t)(p.n_ctx + p.n_cont) == nw);
            CHECK(memcmp(p.ids, c, nc * sizeof *c) == 0);
            CHECK(memcmp(p.ids + nc, w + nc, (nw - nc) * sizeof *w) == 0);
            char *dec;
            size_t dn;
            REQUIRE(bl_tokenizer_decode(m->tok, p.ids + p.n_ctx, (size_t)p.n_cont, &dec, &dn,
                                        &err) == BL_OK);
            CHECK_STR(dec, r->continuation);
            bl_cont_score cs;
            bl_scorer_reset(sc);
            REQUIRE(bl_score_pairs(sc, &p, 1, &cs, &err) == BL_OK);
            CHECK(cs.n_tokens == p.n_cont && cs.start == 0);
            free(dec), free(c), free(w), free(whole);
            bl_token_pair_free(&p);
        }
    }
    /* A hand-checked split: " signs" is 4 pieces of this 512-token vocabulary. */
    bl_token_pair p;
    REQUIRE(bl_encode_pair(m->tok, true, "I don't care about", " signs", &p, &err) == BL_OK);
    CHECK(p.n_ctx == 12 && p.n_cont == 4);
    const int32_t want[] = {262, 333, 416, 419};
    CHECK(memcmp(p.ids + p.n_ctx, want, sizeof want) == 0);
    bl_token_pair_free(&p);
    /* Trailing whitespace of the context moves to the continuation. */
    bl_token_pair a, b;
    REQUIRE(bl_encode_pair(m->tok, true, "Hello ", "world", &a, &err) == BL_OK);
    REQUIRE(bl_encode_pair(m->tok, true, "Hello", " world", &b, &err) == BL_OK);
    CHECK(a.n_ctx == b.n_ctx && a.n_cont == b.n_cont &&
          memcmp(a.ids, b.ids, (size_t)(a.n_ctx + a.n_cont) * sizeof *a.ids) == 0);
    bl_token_pair_free(&a), bl_token_pair_free(&b);
    /* Without BOS the ids are the same minus the first. */
    REQUIRE(bl_encode_pair(m->tok, false, "I don't care about", " signs", &a, &err) == BL_OK);
    CHECK(a.n_ctx == 11 && a.n_cont == 4 && memcmp(a.ids + a.n_ctx, want, sizeof want) == 0);
    bl_token_pair_free(&a);
    CHECK(bl_encode_pair(m->tok, true, "abc", "", &a, &err) != BL_OK);
    bl_scorer_free(sc);
    bl_model_free(m);
}

/* Reference score of one request: the float64 model run from position 0 on lm-eval's window;
 * positions before `keep` are reused from the previous call (its cache holds them). */
typedef struct {
    ref_model r;
    int32_t *cached;
    int n_cached;
    double *lg;
} ref_scorer;

static void ref_score(ref_scorer *rs, const bl_token_pair *p, int ctx, double *ll, bool *greedy,
                      int *start_out) {
    const int V = rs->r.c.vocab_size, total = p->n_ctx + p->n_cont;
    const int start = total > ctx + 1 ? total - (ctx + 1) : 0;
    const int32_t *win = p->ids + start;
    const int n_inp = total - start - 1, first = p->n_ctx - start - 1;
    int l = 0;
    while (l < first && l < rs->n_cached && rs->cached[l] == win[l]) l++;
    *ll = 0;
    *greedy = true;
    for (int pos = l; pos < n_inp; pos++) {
        ref_model_step(&rs->r, win[pos], pos, rs->lg);
        rs->cached[pos] = win[pos];
        if (pos < first) continue;
        *ll += ref_log_prob(rs->lg, V, win[pos + 1]);
        int am = 0;
        for (int v = 1; v < V; v++)
            if (rs->lg[v] > rs->lg[am]) am = v;
        *greedy = *greedy && am == win[pos + 1];
    }
    rs->n_cached = n_inp;
    *start_out = start;
}

typedef struct {
    bl_cont_score s[8][4];
    int n;
} item_log;

static void log_item(void *ctx, int index, const bl_task_item *it, const bl_cont_score *s) {
    item_log *lg = ctx;
    if (index < 8) memcpy(lg->s[index], s, (size_t)it->n_req * sizeof *s);
    lg->n = index + 1;
}

static void test_fp32_vs_float64(void) {
    bl_model *m = load_model();
    if (!m || !test_file_exists(test_data_path("data/piqa/valid.jsonl")))
        SKIP("stories260K or task data absent");
    const int ctx = 2048;
    ref_scorer rs = {0};
    REQUIRE(ref_model_init(&rs.r, &m->cfg, &m->tensors, 1, ctx));
    rs.cached = malloc(ctx * sizeof(int32_t));
    rs.lg = malloc((size_t)m->cfg.vocab_size * sizeof(double));
    double worst = 0;
    int items = 0;
    for (int t = 0; t < BL_TASK_COUNT; t++) {
        int k = test_quick() ? 2 : 6;
        if (t == BL_TASK_BOOLQ) k = test_quick() ? 1 : 4; /* long passages */
        bl_task_set *s = load_task((bl_task_id)t, k);
        REQUIRE(s);
        item_log lg = {0};
        bl_eval_opts o = {.ctx = ctx, .on_item = log_item, .on_item_ctx = &lg};
        bl_task_result res;
        bl_err err = {0};
        REQUIRE(bl_task_eval(m, s, &o, &res, &err) == BL_OK);
        REQUIRE(lg.n == s->n_items && res.n == s->n_items);
        int correct = 0;
        for (int i = 0; i < s->n_items; i++) {
            const bl_task_item *it = &s->items[i];
            bl_cont_score ref[4];
            rs.n_cached = 0;
            for (int j = 0; j < it->n_req; j++) {
                bl_token_pair p;
                REQUIRE(bl_encode_pair(m->tok, true, it->req[j].context,
                                       it->req[j].continuation, &p, &err) == BL_OK);
                ref_score(&rs, &p, ctx, &ref[j].ll, &ref[j].greedy, &ref[j].start);
                ref[j].n_tokens = p.n_cont;
                const bl_cont_score *got = &lg.s[i][j];
                double d = fabs(got->ll - ref[j].ll);
                worst = d > worst ? d : worst;
                CHECK_MSG(d < 1e-3, "%s item %d choice %d: ll %.6f vs float64 %.6f",
                          bl_task_name((bl_task_id)t), i, j, got->ll, ref[j].ll);
                CHECK(got->n_tokens == p.n_cont && got->greedy == ref[j].greedy);
                bl_token_pair_free(&p);
            }
            int p1, n1, p2, n2;
            bl_task_predict(it, lg.s[i], false, &p1, &n1);
            bl_task_predict(it, ref, false, &p2, &n2);
            CHECK_MSG(p1 == p2 && n1 == n2, "%s item %d: argmax %d/%d vs float64 %d/%d",
                      bl_task_name((bl_task_id)t), i, p1, n1, p2, n2);
            correct += p2 == it->gold;
            items++;
        }
        CHECK_NEAR(res.acc, (double)correct / s->n_items, 1e-12);
        bl_task_set_free(s);
    }
    fprintf(stderr, "  %d items, max |ll - ll_float64| = %.2e\n", items, worst);
    free(rs.cached);
    free(rs.lg);
    ref_model_free(&rs.r);
    bl_model_free(m);
}

/* Left truncation to the window as lm-eval: the last ctx+1 tokens, scored against float64. */
static void test_truncation(void) {
    bl_model *m = load_model();
    if (!m) SKIP("stories260K absent");
    bl_err err = {0};
    bl_token_pair p;
    REQUIRE(bl_encode_pair(m->tok, true, "Once upon a time there was a little girl named Lily.",
                           " She liked to play outside.", &p, &err) == BL_OK);
    const int ctx = p.n_cont + 6, total = p.n_ctx + p.n_cont;
    bl_scorer *sc;
    REQUIRE(bl_scorer_new(m, ctx, &sc, &err) == BL_OK);
    bl_cont_score s;
    REQUIRE(bl_score_pairs(sc, &p, 1, &s, &err) == BL_OK);
    CHECK(s.start == total - (ctx + 1) && s.n_tokens == p.n_cont);
    ref_scorer rs = {0};
    REQUIRE(ref_model_init(&rs.r, &m->cfg, &m->tensors, 1, ctx));
    rs.cached = malloc((size_t)ctx * sizeof(int32_t));
    rs.lg = malloc((size_t)m->cfg.vocab_size * sizeof(double));
    double ll;
    bool greedy;
    int start;
    ref_score(&rs, &p, ctx, &ll, &greedy, &start);
    CHECK(start == s.start);
    CHECK_NEAR(s.ll, ll, 1e-3);
    /* a continuation longer than the window is refused */
    bl_scorer *tiny;
    REQUIRE(bl_scorer_new(m, p.n_cont - 1, &tiny, &err) == BL_OK);
    CHECK(bl_score_pairs(tiny, &p, 1, &s, &err) == BL_ERR_ARG);
    bl_scorer_free(tiny);
    free(rs.cached), free(rs.lg);
    ref_model_free(&rs.r);
    bl_token_pair_free(&p);
    bl_scorer_free(sc);
    bl_model_free(m);
}

/* The context shared by the choices runs once; scores equal those of separate runs. */
static void test_prefix_reuse(void) {
    bl_model *m = load_model();
    if (!m || !test_file_exists(test_data_path("data/llm-foundry-icl/arc_easy.jsonl")))
        SKIP("stories260K or task data absent");
    bl_task_set *s = load_task(BL_TASK_ARC_EASY, 1);
    REQUIRE(s);
    const bl_task_item *it = &s->items[0];
    bl_err err = {0};
    bl_token_pair p[4];
    int64_t want = 0;
    for (int j = 0; j < 4; j++) {
        REQUIRE(bl_encode_pair(m->tok, true, it->req[j].context, it->req[j].continuation, &p[j],
                               &err) == BL_OK);
        want += p[j].n_cont;
    }
    want += p[0].n_ctx - 1;
    bl_scorer *sc;
    REQUIRE(bl_scorer_new(m, 512, &sc, &err) == BL_OK);
    bl_cont_score together[4], alone;
    REQUIRE(bl_score_pairs(sc, p, 4, together, &err) == BL_OK);
    CHECK(bl_scorer_computed(sc) == want);
    for (int j = 0; j < 4; j++) {
        bl_scorer_reset(sc);
        REQUIRE(bl_score_pairs(sc, &p[j], 1, &alone, &err) == BL_OK);
        CHECK_NEAR(together[j].ll, alone.ll, 1e-4);
        bl_token_pair_free(&p[j]);
    }
    bl_scorer_free(sc);
    bl_task_set_free(s);
    bl_model_free(m);
}

static void test_predict_and_metrics(void) {
    bl_task_item it = {0};
    bl_err err = {0};
    /* "é": one character, two bytes */
    REQUIRE(bl_item_add(&it, "q", " \xc3\xa9", "\xc3\xa9", &err) == BL_OK);
    REQUIRE(bl_item_add(&it, "q", " ab", "ab", &err) == BL_OK);
    REQUIRE(bl_item_add(&it, "q", " cd", "cd", &err) == BL_OK);
    CHECK(it.req[0].norm_chars == 1 && it.req[0].norm_bytes == 2);
    bl_cont_score s[3] = {{.ll = -2.0}, {.ll = -3.0}, {.ll = -4.0}};
    int p, pn;
    bl_task_predict(&it, s, false, &p, &pn);
    CHECK(p == 0 && pn == 1); /* by characters: -2/1 < -3/2 > -4/2 */
    bl_task_predict(&it, s, true, &p, &pn);
    CHECK(p == 0 && pn == 0); /* by bytes: -2/2 > -3/2 > -4/2 */
    s[1].ll = -2.0;
    s[2].ll = -3.0;
    bl_task_predict(&it, s, false, &p, &pn);
    CHECK(p == 0 && pn == 1); /* ll ties go to the first index (numpy argmax) */
    bl_task_predict(&it, s, true, &p, &pn);
    CHECK(p == 0 && pn == 0); /* so do the normalized ones: -2/2 = -2/2 */
    bl_task_item one = {.req = it.req, .n_req = 1};
    s[0].greedy = true;
    bl_task_predict(&one, s, false, &p, &pn);
    CHECK(p == 0);
    s[0].greedy = false;
    bl_task_predict(&one, s, false, &p, &pn);
    CHECK(p == -1);
    for (int j = 0; j < it.n_req; j++) free(it.req[j].context), free(it.req[j].continuation);
    free(it.req);

    /* acc, its stderr, and LAMBADA's ppl from the per-item scores */
    bl_model *m = load_model();
    if (!m || !test_file_exists(test_data_path("data/llm-foundry-icl/lambada_openai.jsonl")))
        return;
    bl_task_set *ts = load_task(BL_TASK_LAMBADA, 8);
    REQUIRE(ts);
    item_log lg = {0};
    bl_eval_opts o = {.on_item = log_item, .on_item_ctx = &lg};
    bl_task_result r;
    REQUIRE(bl_task_eval(m, ts, &o, &r, &err) == BL_OK);
    double sum = 0;
    int greedy = 0;
    for (int i = 0; i < 8; i++) sum += lg.s[i][0].ll, greedy += lg.s[i][0].greedy;
    CHECK_NEAR(r.ppl, exp(-sum / 8), 1e-9 * r.ppl);
    CHECK_NEAR(r.acc, greedy / 8.0, 1e-12);
    CHECK_NEAR(r.acc_stderr, sqrt(r.acc * (1 - r.acc) / 7), 1e-12);
    CHECK(isnan(r.acc_norm) && r.n == 8 && r.ctx == 2048 && r.bos);
    bl_task_set_free(ts);
    ts = load_task(BL_TASK_OPENBOOKQA, 5);
    REQUIRE(ts);
    REQUIRE(bl_task_eval(m, ts, &(bl_eval_opts){0}, &r, &err) == BL_OK);
    CHECK(!isnan(r.acc_norm) && r.scored > 0 && r.computed < r.tokens);
    bl_task_set_free(ts);
    bl_model_free(m);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f) fputs(text, f), fclose(f);
}

static void test_errors(void) {
    bl_task_id ids[BL_TASK_COUNT];
    int n;
    bl_err err = {0};
    CHECK(bl_task_parse_list("all", ids, &n, &err) == BL_OK && n == BL_TASK_COUNT);
    CHECK(bl_task_parse_list("boolq,piqa,boolq", ids, &n, &err) == BL_OK && n == 2 &&
          ids[0] == BL_TASK_BOOLQ && ids[1] == BL_TASK_PIQA);
    CHECK(bl_task_parse_list("piqa,nope", ids, &n, &err) == BL_ERR_ARG &&
          strstr(err.msg, "nope"));
    CHECK(bl_task_parse_list("piqa,,arc_easy", ids, &n, &err) == BL_ERR_ARG);
    bl_task_set *s = NULL;
    CHECK(bl_task_load(BL_TASK_ARC_EASY, "/nonexistent", 0, &s, &err) != BL_OK && !s &&
          strstr(err.msg, "/nonexistent"));
    char dir[] = "/tmp/bitllm_eval_XXXXXX";
    REQUIRE(mkdtemp(dir));
    char p[512], q[256], h[256];
    snprintf(q, sizeof q, "%s/llm-foundry-icl", dir);
    snprintf(h, sizeof h, "%s/hellaswag", dir);
    REQUIRE(mkdir(q, 0700) == 0 && mkdir(h, 0700) == 0);
    snprintf(p, sizeof p, "%s/arc_easy.jsonl", q);
    write_file(p, "{\"query\": \"Question: a\", \"choices\": [\"x\", \"y\"], \"gold\": 1}\n"
                  "{\"query\": \"Question: b\", \"choices\": [\"x\", \"y\"], \"gold\": \n");
    CHECK(bl_task_load(BL_TASK_ARC_EASY, dir, 0, &s, &err) == BL_ERR_FORMAT &&
          strstr(err.msg, "arc_easy.jsonl:2"));
    CHECK(bl_task_load(BL_TASK_ARC_EASY, dir, 1, &s, &err) == BL_OK && s->n_items == 1);
    bl_task_set_free(s);
    write_file(p, "{\"query\": \"Question: a\", \"choices\": [\"x\", \"y\"], \"gold\": 2}\n");
    CHECK(bl_task_load(BL_TASK_ARC_EASY, dir, 0, &s, &err) == BL_ERR_FORMAT);
    write_file(p, "{\"query\": \"a\", \"choices\": [\"x\", \"y\"], \"gold\": 0}\n");
    CHECK(bl_task_load(BL_TASK_ARC_EASY, dir, 0, &s, &err) == BL_ERR_FORMAT &&
          strstr(err.msg, "Question"));
    write_file(p, "\n\n");
    CHECK(bl_task_load(BL_TASK_ARC_EASY, dir, 0, &s, &err) == BL_ERR_FORMAT &&
          strstr(err.msg, "no items"));
    unlink(p);
    snprintf(p, sizeof p, "%s/hellaswag_val_full.txt", h);
    write_file(p, "A: b\n1\nx\ny\nz\n");
    CHECK(bl_task_load(BL_TASK_HELLASWAG, dir, 0, &s, &err) == BL_ERR_FORMAT);
    write_file(p, "A: b\n7\nw\nx\ny\nz\n");
    CHECK(bl_task_load(BL_TASK_HELLASWAG, dir, 0, &s, &err) == BL_ERR_FORMAT);
    write_file(p, "A: b. c\n2\nw\nx\ny\nz\n");
    CHECK(bl_task_load(BL_TASK_HELLASWAG, dir, 0, &s, &err) == BL_OK && s->n_items == 1 &&
          s->items[0].gold == 2 && strcmp(s->items[0].req[0].context, "A: b. C") == 0);
    bl_task_set_free(s);
    unlink(p);
    rmdir(h), rmdir(q), rmdir(dir);
}

/* The window of ppl/eval/compare: where it comes from, and a window beyond the trained context
 * refused unless asked for (regression: ppl --ctx 99999 ran past the trained context). */
static void test_ctx_choice(void) {
    bl_model m;
    memset(&m, 0, sizeof m);
    m.path = "model.gguf";
    m.cfg.max_seq = 512;
    bl_ctx_choice c;
    bl_err err = {0};
    CHECK(bl_ctx_choose(&m, 0, false, &c, &err) == BL_OK && c.ctx == 512 &&
          c.source == BL_CTX_MODEL && c.trained == 512);
    CHECK(strcmp(bl_ctx_source_name(c.source), "model") == 0);
    CHECK(bl_ctx_choose(&m, 256, false, &c, &err) == BL_OK && c.ctx == 256 &&
          c.source == BL_CTX_FLAG);
    CHECK(bl_ctx_choose(&m, 99999, false, &c, &err) == BL_ERR_ARG);
    CHECK_MSG(strstr(err.msg, "99999") && strstr(err.msg, "512") &&
                  strstr(err.msg, "--allow-long-ctx"),
              "%s", err.msg);
    CHECK(bl_ctx_choose(&m, 99999, true, &c, &err) == BL_OK && c.ctx == 99999);
    char text[160];
    bl_ctx_describe(&c, "--ctx", text, sizeof text);
    CHECK(strstr(text, "from --ctx") && strstr(text, "beyond the trained context"));
    CHECK(bl_ctx_choose(&m, 1, true, &c, &err) == BL_ERR_ARG);
    CHECK(bl_ctx_choose(&m, -5, true, &c, &err) == BL_ERR_ARG);
    m.cfg.max_seq = 8192; /* capped by default */
    CHECK(bl_ctx_choose(&m, 0, false, &c, &err) == BL_OK && c.ctx == 2048 &&
          c.source == BL_CTX_CAP && strcmp(bl_ctx_source_name(c.source), "default") == 0);
    bl_ctx_describe(&c, "--ctx", text, sizeof text);
    CHECK(strstr(text, "8192") != NULL);
    /* the library's default acc_norm is lm-eval's: by characters */
    bl_eval_opts eo = {0};
    CHECK(!eo.norm_bytes);
}

int main(void) {
    (void)ref_ppl_nll; /* shared header; this file scores requests, not streams */
    snprintf(data_dir, sizeof data_dir, "%s", test_data_path("data"));
    TEST_RUN(test_task_strings);
    TEST_RUN(test_hellaswag_preprocess);
    TEST_RUN(test_token_spans);
    TEST_RUN(test_truncation);
    TEST_RUN(test_prefix_reuse);
    TEST_RUN(test_predict_and_metrics);
    TEST_RUN(test_errors);
    TEST_RUN(test_ctx_choice);
    TEST_RUN(test_fp32_vs_float64);
    for (int t = 0; t < BL_TASK_COUNT; t++) bl_task_set_free(cached_sets[t]);
    return test_summary();
}
