/* The f64 instantiation of the training engine, for finite-difference gradient checks: the same
 * source as nn_f32.c with double arithmetic, dgemm, and a scalar loop for the sign products. */
#include "nn/nn.h"

#define NN_F64
#define NN_REAL double
#define FN(x) x##_f64
#include "nn/nn_real.h"

#include "nn/layers_impl.h"
#include "nn/linear_impl.h"
#include "nn/loss_impl.h"
#include "nn/model_impl.h"
