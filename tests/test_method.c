/* Methods and the generic code over the formats' traits (src/formats/params.c): spec parsing and
 * its errors, aliases and recorded names, which options a method reads, the bpw → middle
 * dimension search against the fitters' own closed forms, and the per-layer quantization_config
 * JSON written and read back through each format's schema. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "bitllm/quantize.h"
#include "formats/format_json.h"
#include "test.h"

static void test_specs(void) {
    bl_err err = {0};
    bl_method m;
    REQUIRE(bl_method_parse("rtn2", &m, &err) == BL_OK);
    CHECK(m.format == bl_format_find("rtn") && m.params.bits == 2 && m.params.group == 128);
    REQUIRE(bl_method_parse("rtn3:group=64", &m, &err) == BL_OK);
    CHECK(m.params.bits == 3 && m.params.group == 64);
    char name[64], spec[128];
    bl_method_name(&m, name, sizeof name);
    CHECK(strcmp(name, "rtn3") == 0);
    REQUIRE(bl_method_parse("rtn:bits=5,group=32", &m, &err) == BL_OK);
    bl_method_name(&m, name, sizeof name);
    CHECK(strcmp(name, "rtn") == 0);
    bl_method_spec(&m, spec, sizeof spec);
    CHECK_MSG(strcmp(spec, "rtn:bits=5,group=32") == 0, "%s", spec);
    REQUIRE(bl_method_parse("mdbf:rank=2,paths=3", &m, &err) == BL_OK); /* alias of rank_l */
    CHECK(m.params.rank_l == 2 && m.params.paths == 3 && m.params.mid == 0);
    REQUIRE(bl_method_parse("dbf:mid=40", &m, &err) == BL_OK);
    CHECK(m.params.mid == 40);
    /* errors name what is wrong */
    CHECK(bl_method_parse("rtn:bits=0", &m, &err) == BL_ERR_ARG && strstr(err.msg, "bits=0"));
    CHECK(bl_method_parse("rtn:bits=2x", &m, &err) == BL_ERR_ARG && strstr(err.msg, "integer"));
    CHECK(bl_method_parse("mdbf:paths=65", &m, &err) == BL_ERR_ARG && strstr(err.msg, "paths"));
    CHECK(bl_method_parse("onebit:bits=2", &m, &err) == BL_ERR_ARG &&
          strstr(err.msg, "no parameter 'bits'"));
    CHECK(bl_method_parse("mdbf:paths=2,paths=3", &m, &err) == BL_ERR_ARG &&
          strstr(err.msg, "paths is given twice"));
    CHECK(bl_method_parse("mdbf:rank=2,rank_l=3", &m, &err) == BL_ERR_ARG &&
          strstr(err.msg, "given twice"));
    REQUIRE(bl_method_parse("rtn2:bits=3", &m, &err) == BL_OK); /* overrides the alias's bits */
    CHECK(m.params.bits == 3);
    CHECK(bl_method_parse("rtn:=2", &m, &err) == BL_ERR_ARG);
    CHECK(bl_method_parse("rtn:bits=2,", &m, &err) == BL_ERR_ARG);
    CHECK(bl_method_parse("rtn:", &m, &err) == BL_ERR_ARG);
    CHECK(bl_method_parse("", &m, &err) == BL_ERR_ARG);
    CHECK(bl_method_parse("nope", &m, &err) == BL_ERR_ARG && strstr(err.msg, "mdbf"));
    /* options: flag setters and the uses table */
    REQUIRE(bl_method_parse("mdbf", &m, &err) == BL_OK);
    CHECK(bl_method_set_flag(&m, BL_QP_PATHS, 2, &err) == BL_OK && m.params.paths == 2);
    CHECK(bl_method_set_flag(&m, BL_QP_GROUP, 64, &err) == BL_ERR_ARG);
    CHECK(bl_method_uses(&m, false, BL_QP_ACTIVATION_AWARE));
    CHECK(!bl_method_uses(&m, true, BL_QP_ACTIVATION_AWARE) && bl_method_uses(&m, true, BL_QP_SEED));
    REQUIRE(bl_method_parse("rtn1", &m, &err) == BL_OK);
    CHECK(!bl_method_uses(&m, false, BL_QP_GROUP));
    REQUIRE(bl_method_parse("rtn2", &m, &err) == BL_OK);
    CHECK(bl_method_uses(&m, false, BL_QP_GROUP));
    char users[96];
    bl_qparam_users(BL_QP_BPW, false, users, sizeof users);
    CHECK_MSG(strcmp(users, "dbf, mdbf") == 0, "%s", users);
    bl_qparam_users(BL_QP_ENVELOPE_RANK, false, users, sizeof users);
    CHECK_MSG(strcmp(users, "mdbf") == 0, "%s", users);
}

/* The generic search gives the largest mid whose stored_bits fit the target (at least 1, at most
 * BL_MAX_MID), over awkward shapes, targets and envelope shapes. */
static void check_mid(const bl_format_ops *f, int64_t m, int64_t n, bl_format_params p,
                      double bpw) {
    const double budget = bpw * (double)m * (double)n;
    int64_t k = bl_format_mid_for_bpw(f, m, n, &p, bpw);
    CHECK(k >= 1 && k <= BL_MAX_MID);
    p.mid = k;
    if (k > 1) CHECK((double)bl_format_stored_bits(f, m, n, &p) <= budget);
    p.mid = k + 1;
    if (k < BL_MAX_MID)
        CHECK_MSG((double)bl_format_stored_bits(f, m, n, &p) > budget, "%s %lldx%lld bpw %g: mid %lld",
                  f->name, (long long)m, (long long)n, bpw, (long long)k);
}

static void test_mid_search(void) {
    const bl_format_ops *dbf = bl_format_find("dbf"), *mdbf = bl_format_find("mdbf");
    const int64_t shapes[][2] = {{1, 1}, {3, 5}, {64, 172}, {10, 20}, {4096, 4096}, {11008, 4096},
                                 {151, 7}};
    const double bpws[] = {0.01, 0.5, 1.0, 1.0078125, 1.3, 2.0, 3.7, 100.0, 1e9};
    int checked = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (size_t b = 0; b < sizeof bpws / sizeof bpws[0]; b++) {
            const int64_t m = shapes[s][0], n = shapes[s][1];
            check_mid(dbf, m, n, (bl_format_params){0}, bpws[b]);
            for (int l = 1; l <= 4; l += 3)
                for (int P = 1; P <= 2; P++) {
                    check_mid(mdbf, m, n, (bl_format_params){.rank_l = l, .paths = P}, bpws[b]);
                    checked++;
                }
            /* MDBF with l = 1, P = 1 stores what DBF stores: the same middle dimension */
            bl_format_params p0 = {0}, p1 = {.rank_l = 1, .paths = 1};
            CHECK(bl_format_mid_for_bpw(dbf, m, n, &p0, bpws[b]) ==
                  bl_format_mid_for_bpw(mdbf, m, n, &p1, bpws[b]));
        }
    CHECK(checked == 7 * 9 * 4);
    /* the published numbers (ALGORITHMS.md §5) and the limits */
    bl_format_params p = {.rank_l = 4, .paths = 1}, p0 = {0};
    CHECK(bl_format_mid_for_bpw(mdbf, 4096, 4096, &p, 1.0) == 1953);
    CHECK(bl_format_mid_for_bpw(dbf, 4096, 4096, &p0, 1.0) == 2028);
    CHECK(bl_format_mid_for_bpw(dbf, 10, 20, &p0, 100.0) == 424); /* no cap at min(m, n) */
    CHECK(bl_format_mid_for_bpw(dbf, 10, 10, &p0, 0.01) == 1);    /* clamped up */
    CHECK(bl_format_mid_for_bpw(dbf, 1, 1, &p0, 1e9) == BL_MAX_MID);
}

/* Per-layer JSON: each format's keys, read back into identical parameters; keys of other
 * formats ignored; ranges and types checked with the entry named. */
static void test_json(void) {
    struct {
        const char *fmt;
        bl_format_params p;
        const char *want;
    } cases[] = {
        {"rtn", {.bits = 3, .group = 64}, "{\"format\":\"rtn\",\"bits\":3,\"group\":64}"},
        {"rtn", {.bits = 1}, "{\"format\":\"rtn\",\"bits\":1}"},
        {"dbf", {.mid = 12345}, "{\"format\":\"dbf\",\"mid\":12345}"},
        {"mdbf", {.mid = 7, .rank_l = 2, .paths = 3},
         "{\"format\":\"mdbf\",\"mid\":7,\"rank_l\":2,\"paths\":3}"},
        {"onebit", {.post_ln = true}, "{\"format\":\"onebit\",\"post_ln\":true}"},
        {"qsym", {.bits = 4, .group = 32}, "{\"format\":\"qsym\",\"bits\":4,\"group\":32}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bl_linear L = {.ops = bl_format_find(cases[i].fmt), .params = cases[i].p};
        cJSON *j = bl_format_params_to_json(&L);
        char *txt = cJSON_PrintUnformatted(j);
        CHECK_MSG(strcmp(txt, cases[i].want) == 0, "%s", txt);
        const bl_format_ops *ops = NULL;
        bl_format_params back;
        bl_err err = {0};
        CHECK(bl_format_params_from_json(j, "x", &ops, &back, &err) == BL_OK);
        CHECK(ops == L.ops && memcmp(&back, &cases[i].p, sizeof back) == 0);
        free(txt);
        cJSON_Delete(j);
    }
    const char *bad[] = {"{\"format\":\"rtn\",\"bits\":9}", "{\"format\":\"dbf\",\"mid\":0}",
                         "{\"format\":\"dbf\",\"mid\":1.5}", "{\"format\":\"onebit\",\"post_ln\":1}",
                         "{\"format\":\"zzz\"}", "{\"bits\":2}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cJSON *j = cJSON_Parse(bad[i]);
        const bl_format_ops *ops;
        bl_format_params p;
        bl_err err = {0};
        CHECK_MSG(bl_format_params_from_json(j, "model.layers.0.mlp.up_proj", &ops, &p, &err) != BL_OK &&
                      strstr(err.msg, "model.layers.0.mlp.up_proj"),
                  "%s accepted", bad[i]);
        cJSON_Delete(j);
    }
    /* another format's key is not read: dbf ignores "bits" */
    cJSON *j = cJSON_Parse("{\"format\":\"dbf\",\"mid\":3,\"bits\":2}");
    const bl_format_ops *ops;
    bl_format_params p;
    CHECK(bl_format_params_from_json(j, "x", &ops, &p, NULL) == BL_OK && p.mid == 3 && p.bits == 0);
    cJSON_Delete(j);
}

/* The --bpw keyword and compare's default methods come from the registry's traits. */
static void test_registry_defaults(void) {
    int n, refs = 0;
    const bl_format_ops *const *all = bl_format_list(&n);
    for (int i = 0; i < n; i++) refs += all[i]->bpw_reference;
    CHECK(refs == 1);
    CHECK(strcmp(bl_bpw_keyword(), "onebit") == 0);
    double v = -1;
    bl_err err = {0};
    CHECK(bl_bpw_parse("onebit", 16, &v, &err) == BL_OK && v == 0);
    CHECK(bl_bpw_parse("1.5", 16, &v, &err) == BL_OK && v == 1.5);
    CHECK(bl_bpw_parse("16", 16, &v, &err) == BL_OK && v == 16);
    static const char *bad[] = {"", "0", "-1", "16.5", "nan", "1.5x", "dbf"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = -1;
        CHECK_MSG(bl_bpw_parse(bad[i], 16, &v, &err) == BL_ERR_ARG && v == -1 &&
                      strstr(err.msg, "onebit"),
                  "'%s' accepted as a bpw target", bad[i]);
    }
    char list[128];
    bl_compare_default_methods(list, sizeof list);
    CHECK_MSG(strcmp(list, "rtn1,onebit,dbf,mdbf") == 0, "compare's defaults: %s", list);
    for (int i = 0; i < n; i++) {
        bl_method m;
        if (all[i]->compare_default)
            CHECK_MSG(bl_method_parse(all[i]->compare_default, &m, &err) == BL_OK &&
                          m.format == all[i],
                      "%s: compare_default '%s' is not one of its specs", all[i]->name,
                      all[i]->compare_default);
    }
}

int main(void) {
    TEST_RUN(test_specs);
    TEST_RUN(test_mid_search);
    TEST_RUN(test_json);
    TEST_RUN(test_registry_defaults);
    return test_summary();
}
