/* A layer's parameters in quantization_config (docs/format.md), written and read through the
 * format's parameter schema: integers exact, only the format's own keys. */
#ifndef BITLLM_FORMATS_FORMAT_JSON_H
#define BITLLM_FORMATS_FORMAT_JSON_H

#include <cjson/cJSON.h>

#include "bitllm/format.h"

/* {"format": name, key: value, ...}: the schema's parameters that are set (non-zero / true). */
cJSON *bl_format_params_to_json(const bl_linear *L);
/* The inverse: *ops from "format", p from the schema's keys (each checked against its range);
 * `where` names the entry in messages. Keys of other formats are ignored. */
bl_status bl_format_params_from_json(const cJSON *o, const char *where, const bl_format_ops **ops,
                                     bl_format_params *p, bl_err *err);

#endif
