/* Shared by the MPI and the serial communication layers (src/dist/). */
#ifndef BITLLM_DIST_INTERNAL_H
#define BITLLM_DIST_INTERNAL_H

#include "bitllm/dist.h"

/* The rank count a launcher announced in the environment (0: not started by a launcher, -1: by
 * one that does not say how many ranks it started). */
int dist_launcher_size(void);
/* calloc'ed parts/sizes arrays of n entries. */
bl_status dist_parts_new(int n, void ***parts, size_t **sizes, bl_err *err);
/* The gather of one rank: a copy of buf. */
bl_status dist_gather_self(const void *buf, size_t n, void ***parts, size_t **sizes,
                           bl_err *err);

#endif
