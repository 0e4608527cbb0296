/* What both communication layers share: the launcher's rank count and the gather containers. */
#include "bitllm/dist.h"

#include <stdlib.h>
#include <string.h>

#include "dist/dist_internal.h"

int dist_launcher_size(void) {
    /* Open MPI's mpirun, then PMIx and PMI launchers (srun, hydra) */
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v) return atoi(v) > 0 ? atoi(v) : 1;
    }
    return getenv("PMIX_RANK") ? -1 : 0; /* a PMIx launch that does not say its size */
}

bl_status dist_parts_new(int n, void ***parts, size_t **sizes, bl_err *err) {
    *parts = calloc((size_t)n, sizeof **parts);
    *sizes = calloc((size_t)n, sizeof **sizes);
    if (!*parts || !*sizes) {
        bl_dist_parts_free(*parts, *sizes);
        *parts = NULL;
        *sizes = NULL;
        return bl_fail(err, BL_ERR_NOMEM, "gather: out of memory");
    }
    return BL_OK;
}

bl_status dist_gather_self(const void *buf, size_t n, void ***parts, size_t **sizes,
                           bl_err *err) {
    bl_status s = dist_parts_new(1, parts, sizes, err);
    if (s) return s;
    (*parts)[0] = malloc(n ? n : 1);
    if (!(*parts)[0]) {
        bl_dist_parts_free(*parts, *sizes);
        *parts = NULL;
        *sizes = NULL;
        return bl_fail(err, BL_ERR_NOMEM, "gather: out of memory for %zu bytes", n);
    }
    if (n) memcpy((*parts)[0], buf, n);
    (*sizes)[0] = n;
    return BL_OK;
}

void bl_dist_parts_free(void **parts, size_t *sizes) {
    if (parts) {
        /* the count is not stored: the arrays are allocated for size() entries */
        for (int r = 0; r < bl_dist_size(); r++) free(parts[r]);
    }
    free(parts);
    free(sizes);
}
