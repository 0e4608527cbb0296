/* The assignment of jobs (matrices to fit) to ranks: longest processing time first. */
#include "bitllm/dist.h"

#include <stdlib.h>

typedef struct {
    double cost;
    int index;
} job;

static int by_cost_desc(const void *a, const void *b) {
    const job *x = a, *y = b;
    if (x->cost != y->cost) return x->cost > y->cost ? -1 : 1;
    return x->index - y->index; /* a total order: qsort's instability cannot change the plan */
}

bl_status bl_dist_assign(const double *cost, int n, int ranks, int *owner, double *load,
                         bl_err *err) {
    if (n < 0 || ranks < 1 || (n > 0 && (!cost || !owner)))
        return bl_fail(err, BL_ERR_ARG, "assign: bad arguments (%d jobs, %d ranks)", n, ranks);
    for (int i = 0; i < n; i++)
        if (!(cost[i] >= 0))
            return bl_fail(err, BL_ERR_ARG, "assign: job %d has cost %g", i, cost[i]);
    job *jobs = bl_malloc_array((size_t)(n ? n : 1), sizeof *jobs);
    double *ld = calloc((size_t)ranks, sizeof *ld);
    if (!jobs || !ld) {
        free(jobs);
        free(ld);
        return bl_fail(err, BL_ERR_NOMEM, "assign: out of memory");
    }
    for (int i = 0; i < n; i++) jobs[i] = (job){cost[i], i};
    qsort(jobs, (size_t)n, sizeof *jobs, by_cost_desc);
    for (int i = 0; i < n; i++) {
        int best = 0;
        for (int r = 1; r < ranks; r++)
            if (ld[r] < ld[best]) best = r;
        owner[jobs[i].index] = best;
        ld[best] += jobs[i].cost;
    }
    if (load)
        for (int r = 0; r < ranks; r++) load[r] = ld[r];
    free(jobs);
    free(ld);
    return BL_OK;
}
