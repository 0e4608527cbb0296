/* The f32 instantiation of the training engine: what training runs. */
#include "nn/nn.h"

#define NN_REAL float
#define FN(x) x##_f32
#include "nn/nn_real.h"

#include "nn/layers_impl.h"
#include "nn/linear_impl.h"
#include "nn/loss_impl.h"
#include "nn/model_impl.h"
