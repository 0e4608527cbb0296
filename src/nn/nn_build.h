/* Helpers that lay out and fill the training engine's model, shared by the generic builder
 * (nn_model.c) and the table of trainable formats (nn_formats.c). Private to src/nn. */
#ifndef BITLLM_NN_BUILD_H
#define BITLLM_NN_BUILD_H

#include "nn/nn.h"

/* Appends a tensor; returns its offset, or NN_NONE when out of memory (checked by the caller
 * through M->t == NULL). */
size_t nn_add_tensor(nn_model *M, const nn_build_opts *o, int role, int64_t rows, int64_t cols,
                     const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* count sign matrices for L, each then set up by nn_init_signs (rows×cols, zero bits). */
bl_status nn_new_signs(nn_linear *L, int count, bl_err *err);
bl_status nn_init_signs(nn_signs *s, int64_t rows, int64_t cols, bl_err *err);
/* Latent (or flipping score) = ±init from a packed sign matrix. */
void nn_latent_from_bits(float *lat, const nn_signs *s, float init);
/* After frozen sign matrices are filled: their flipping scores and kernel preparation. */
bl_status nn_frozen_signs_ready(const nn_linear *L, const nn_build_opts *o, float *P,
                                bl_err *err);
/* Random fills: normal(mean, sd), scale·U[0.5, 1.5), random signs. */
void nn_fill_normal(float *v, size_t n, bl_rng *r, float mean, float sd);
void nn_fill_pos(float *v, size_t n, bl_rng *r, float scale);
void nn_random_signs(nn_signs *s, bl_rng *r);

#endif
