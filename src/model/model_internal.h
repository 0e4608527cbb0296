/* Model internals shared by the loader, the forward pass and the quantized-checkpoint writer. */
#ifndef BITLLM_MODEL_INTERNAL_H
#define BITLLM_MODEL_INTERNAL_H

#include "bitllm/model.h"

bl_status bl_config_validate(const bl_config *c, const char *path, bl_err *err);
/* Parses one layer's entry of quantization_config.layers ({"format": ..., params}). */
#include <cjson/cJSON.h>
bl_status bl_format_params_from_json(const cJSON *o, const char *where,
                                     const bl_format_ops **ops, bl_format_params *p, bl_err *err);

/* Writes m with proj (n_layers × BL_PROJ_COUNT) in place of its own projections (src/model/save.c). */
bl_status bl_model_write(const bl_model *m, const bl_linear *proj, const char *outdir,
                         const char *method, const char *extra_json, bl_err *err);

/* The HF config.json object for cfg (src/model/save.c). */
cJSON *bl_config_to_json(const bl_config *c);

/* Released OneBit checkpoints (src/model/onebit_import.c). */
bool bl_onebit_layer_present(const bl_tensor_set *ts, const char *prefix);
bl_status bl_onebit_import_layer(const bl_tensor_set *ts, const char *prefix, int64_t m,
                                 int64_t n, bl_linear *L, bl_err *err);

#endif
