/* The communication layer alone (one rank: the tests are not started by mpirun; tests/cli_mpi.sh
 * runs the same calls on 2 ranks), the rank plan of layer-wise quantize and the steps of block
 * reconstruction. */
#include "bitllm/dist.h"
#include "ptq/quantize_dist.h"
#include "ptq/recon_internal.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

static void test_assign(void) {
    /* LPT: 7, 5, 4, 3, 3, 2 onto 2 ranks -> {7, 3, 2} = 12 and {5, 4, 3} = 12 */
    const double cost[] = {3, 7, 2, 5, 4, 3};
    int owner[6];
    double load[2];
    bl_err err = {0};
    REQUIRE(bl_dist_assign(cost, 6, 2, owner, load, &err) == BL_OK);
    CHECK(load[0] == 12 && load[1] == 12);
    CHECK(owner[1] == 0 && owner[3] == 1 && owner[4] == 1);
    /* equal costs: the lower index goes first, onto the lower rank */
    CHECK(owner[0] == 0 && owner[5] == 1);
    /* the plan is a function of the costs: the same again, every entry assigned in range */
    int again[6];
    REQUIRE(bl_dist_assign(cost, 6, 2, again, NULL, &err) == BL_OK);
    CHECK(memcmp(owner, again, sizeof owner) == 0);
    /* more ranks than jobs: one job each, the rest idle */
    int few[2];
    double ld[5];
    REQUIRE(bl_dist_assign(cost, 2, 5, few, ld, &err) == BL_OK);
    CHECK(few[0] != few[1] && ld[2] == 0 && ld[3] == 0 && ld[4] == 0);
    /* a sweep of awkward sizes: the most loaded rank is within the largest job of the least */
    double big[97], total = 0;
    int ob[97];
    for (int i = 0; i < 97; i++) total += big[i] = (double)((i * 37) % 11 + 1);
    for (int r = 1; r <= 9; r++) {
        double l[9];
        REQUIRE(bl_dist_assign(big, 97, r, ob, l, &err) == BL_OK);
        double lo = l[0], hi = l[0], sum = 0;
        for (int k = 0; k < r; k++) {
            lo = l[k] < lo ? l[k] : lo;
            hi = l[k] > hi ? l[k] : hi;
            sum += l[k];
        }
        CHECK_MSG(hi - lo <= 11 && sum == total, "ranks %d: loads %g..%g, sum %g of %g", r, lo,
                  hi, sum, total);
        for (int i = 0; i < 97; i++) CHECK(ob[i] >= 0 && ob[i] < r);
    }
    /* bad input is refused */
    const double neg[] = {1, -1};
    CHECK(bl_dist_assign(neg, 2, 2, owner, NULL, &err) == BL_ERR_ARG);
    CHECK(bl_dist_assign(cost, 6, 0, owner, NULL, &err) == BL_ERR_ARG);
}

static void test_one_rank(void) {
    bl_err err = {0};
    CHECK(bl_dist_rank() == 0 && bl_dist_size() == 1);
    float f[5] = {1, 2.5f, -3, 0, 1e30f};
    double d[2] = {0.1, -7};
    REQUIRE(bl_dist_allreduce_sum_f32(f, 5, &err) == BL_OK);
    REQUIRE(bl_dist_allreduce_sum_f64(d, 2, &err) == BL_OK);
    CHECK(f[1] == 2.5f && f[4] == 1e30f && d[0] == 0.1 && d[1] == -7);
    CHECK(bl_dist_bcast(f, sizeof f, 0, &err) == BL_OK && f[2] == -3);
    CHECK(bl_dist_bcast(f, sizeof f, 1, &err) == BL_ERR_ARG);
    CHECK(bl_dist_barrier(&err) == BL_OK);
    void **parts;
    size_t *sizes;
    const char msg[] = "fitted layers";
    REQUIRE(bl_dist_gather_bytes(msg, sizeof msg, &parts, &sizes, &err) == BL_OK);
    CHECK(sizes[0] == sizeof msg && memcmp(parts[0], msg, sizeof msg) == 0 && parts[0] != msg);
    bl_dist_parts_free(parts, sizes);
    REQUIRE(bl_dist_gather_bytes(NULL, 0, &parts, &sizes, &err) == BL_OK);
    CHECK(sizes[0] == 0);
    bl_dist_parts_free(parts, sizes);
}

static void test_cost(void) {
    bl_layer_fit_opts o;
    bl_layer_fit_opts_default(&o);
    REQUIRE(bl_method_parse("rtn2", &o.method, NULL) == BL_OK);
    CHECK(qd_cost(&o, 64, 172) == 64.0 * 172);
    REQUIRE(bl_method_parse("dbf", &o.method, NULL) == BL_OK);
    /* dbf: the middle dimension multiplies the cost; a wider matrix costs more */
    const double small = qd_cost(&o, 64, 64), wide = qd_cost(&o, 172, 64);
    CHECK(small > 64.0 * 64 && wide > small);
    o.bpw = 2.0; /* a larger middle dimension */
    CHECK(qd_cost(&o, 64, 64) > small);
}

/* The steps of block reconstruction (one rank holds every group): each step takes one sequence of
 * every contiguous group, an epoch is a permutation of all sequences, and B is the largest
 * divisor of the sequence count not above the cap. */
static void test_recon_steps(void) {
    bl_err err = {0};
    const int64_t counts[] = {1, 7, 12, 30, 97};
    for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
        const int64_t n = counts[c];
        rc_shard sh;
        REQUIRE(rc_shard_make(n, 4, &sh, &err) == BL_OK);
        CHECK(n % sh.B == 0 && sh.b == sh.B && sh.seq0 == 0 && sh.n_loc == n);
        for (int B = sh.B + 1; B <= 4; B++) CHECK(n % B != 0);
        int64_t *order = malloc(sizeof(int64_t) * (size_t)n);
        char *seen = calloc((size_t)n, 1);
        REQUIRE(order && seen);
        REQUIRE(rc_epoch_order(&sh, 12345, order, &err) == BL_OK);
        const int64_t P = n / sh.B;
        for (int64_t k = 0; k < P; k++)
            for (int i = 0; i < sh.b; i++) {
                const int64_t q = order[k * sh.b + i];
                CHECK(q >= 0 && q < n && q / P == i); /* row i of a step: group i */
                if (q >= 0 && q < n) seen[q]++;
            }
        for (int64_t q = 0; q < n; q++) CHECK(seen[q] == 1);
        /* another seed, another order (when there is more than one) */
        int64_t *other = malloc(sizeof(int64_t) * (size_t)n);
        REQUIRE(other && rc_epoch_order(&sh, 54321, other, &err) == BL_OK);
        if (P > 3) CHECK(memcmp(order, other, sizeof(int64_t) * (size_t)n) != 0);
        free(other);
        free(order);
        free(seen);
    }
}

int main(void) {
    TEST_RUN(test_assign);
    TEST_RUN(test_one_rank);
    TEST_RUN(test_cost);
    TEST_RUN(test_recon_steps);
    return test_summary();
}
