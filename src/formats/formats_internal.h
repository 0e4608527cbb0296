/* The ops tables of the built-in formats, collected by the registry (src/formats/registry.c). */
#ifndef BITLLM_FORMATS_INTERNAL_H
#define BITLLM_FORMATS_INTERNAL_H

#include "bitllm/format.h"

extern const bl_format_ops bl_format_dense;
extern const bl_format_ops bl_format_onebit;
extern const bl_format_ops bl_format_dbf;
extern const bl_format_ops bl_format_mdbf;
extern const bl_format_ops bl_format_rtn;

#endif
