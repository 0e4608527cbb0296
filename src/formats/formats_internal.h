/* What the formats of src/formats share: the layer record of a tabled format (the generic code of
 * layer.c builds it from the format's tensor table). */
#ifndef BITLLM_FORMATS_INTERNAL_H
#define BITLLM_FORMATS_INTERNAL_H

#include "bitllm/format.h"
#include "bitllm/kernels.h"

/* L->impl of a tabled format: its data struct and one prepared sign matrix per sign tensor, in
 * repeat-major table order (the sign tensors of repeat 0 in table order, then of repeat 1, ...). */
typedef struct {
    void *data;
    bl_signmat *S;
    int n_signs;
} bl_layer_impl;

static inline const void *bl_layer_d(const bl_linear *L) {
    return ((const bl_layer_impl *)L->impl)->data;
}
static inline const bl_signmat *bl_layer_signs(const bl_linear *L) {
    return ((const bl_layer_impl *)L->impl)->S;
}

#endif
