/* The rtn format (round to nearest): bits = 1, sign × per-row mean |W| (rtn1); bits = 2..8,
 * asymmetric codes with a scale and a zero point per group of input columns. Its data struct, the
 * wrapping of fitted data into a layer (format.h), its fit and its random factors (fit.h). */
#ifndef BITLLM_FORMATS_RTN_H
#define BITLLM_FORMATS_RTN_H

#include "bitllm/fit.h"

BL_API_BEGIN

/* Scales and zero points are FP16 values held as float. The struct owns its buffers unless
 * `view` is set (loaded from a mapped file). */
typedef struct {
    int64_t m, n;
    int bits;       /* 1: sign × per-row mean |W| (rtn1); 2..4: asymmetric per-group */
    int group;      /* columns per group (bits >= 2) */
    uint8_t *q;     /* bits == 1: packed signs m × ceil(n/8);
                       bits >= 2: codes, row-major, each row ceil(n·bits/8) bytes, LSB first */
    float *scale;   /* bits == 1: m; else m × ceil(n/group) */
    float *zero;    /* bits >= 2: m × ceil(n/group) (in code units); NULL for bits == 1 */
    bool view;
} bl_rtn;

/* Wraps fitted data into a layer (takes ownership of the struct's buffers). */
bl_status bl_linear_from_rtn(bl_linear *L, bl_rtn *q, bl_err *err);
void bl_rtn_free(bl_rtn *q);

/* RTN baselines: bits = 1 (sign × per-row mean |W|) or 2..4 (asymmetric per group). */
bl_status bl_fit_rtn(const float *W, int64_t m, int64_t n, int bits, int group, bl_rtn *out,
                     bl_err *err);
/* Random factors (fit.h): codes centred on the zero point (2^bits − 1)/2. */
bl_status bl_random_rtn(int64_t m, int64_t n, int bits, int group, uint64_t seed, bl_rtn *out,
                        bl_err *err);

BL_API_END
#endif
