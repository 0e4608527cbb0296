/* Pieces of src/core/outdir.c that tests reach directly. */
#ifndef BITLLM_OUTDIR_INTERNAL_H
#define BITLLM_OUTDIR_INTERNAL_H

#include "bitllm/core.h"

/* Removes a file, a link, or a directory tree (links not followed). 0 on success. */
int bl_remove_tree(const char *path);
/* Puts tmp in place of target: renamed when target does not exist, else exchanged with it
 * atomically (exchange true and supported) or, failing that, target renamed to old, tmp renamed
 * in, old removed. */
bl_status bl_outdir_swap(const char *target, const char *tmp, const char *old, bool exchange,
                         bl_err *err);

#endif
