/* Element types and tensor views. The dtype table in src/core/dtype.c is the one place an element
 * type is registered (name, block size, bytes per block, conversion to f32). */
#ifndef BITLLM_TENSOR_H
#define BITLLM_TENSOR_H

#include "bitllm/core.h"

BL_API_BEGIN

typedef enum {
    BL_DT_F32 = 0,
    BL_DT_F16,
    BL_DT_BF16,
    BL_DT_Q8_0, /* GGUF: blocks of 32 int8 with one f16 scale (34 bytes) */
    BL_DT_U8,   /* raw bytes, e.g. bit-packed signs */
    BL_DT_I8,
    BL_DT_I32,
    BL_DT_I64,
    BL_DT_F64,
    BL_DT_COUNT
} bl_dtype;

typedef struct {
    const char *name;      /* safetensors spelling: "F32", "F16", "BF16", "U8", ... */
    int block;             /* elements per block (1 for plain types) */
    int block_bytes;       /* bytes per block */
    /* Converts n elements (n a multiple of block) starting at src to f32; NULL if not numeric. */
    void (*to_f32)(const void *src, float *dst, size_t n);
    /* Index of the first Inf/NaN among n elements at src (n if none); NULL for integer types. */
    size_t (*find_nonfinite)(const void *src, size_t n);
} bl_dtype_traits;

const bl_dtype_traits *bl_dtype_info(bl_dtype t);
/* Looks up a dtype by its safetensors name; returns false if unknown. */
bool bl_dtype_from_name(const char *name, bl_dtype *out);
/* Bytes for n elements; false if n is not a multiple of the block or overflows. */
bool bl_dtype_nbytes(bl_dtype t, uint64_t n, size_t *out);

#define BL_MAX_DIMS 4
#define BL_MAX_NAME 128

/* A view on tensor data owned by someone else (usually a memory-mapped file).
 * Shapes are in row-major order as in safetensors/PyTorch: shape[0] is the slowest dimension,
 * so a linear weight is {out_features, in_features}. */
typedef struct {
    char name[BL_MAX_NAME];
    bl_dtype dtype;
    int ndim;
    int64_t shape[BL_MAX_DIMS];
    const void *data;
    size_t nbytes;
} bl_tensor;

int64_t bl_tensor_numel(const bl_tensor *t);
/* Converts row r of a 2-D tensor (or element range [r*cols, (r+1)*cols) of any tensor) to f32. */
void bl_tensor_row_f32(const bl_tensor *t, int64_t r, int64_t cols, float *dst);
/* Whether a floating-point tensor holds an Inf or NaN; *index receives the first one's element
 * index (for Q8_0, the first element of the block whose scale is non-finite). Large tensors are
 * scanned in pieces split across the threads of pool (NULL: the calling thread). */
struct bl_pool;
bool bl_tensor_find_nonfinite(const bl_tensor *t, struct bl_pool *pool, int64_t *index);
/* Copies the whole tensor to a new f32 buffer (caller frees). */
bl_status bl_tensor_to_f32(const bl_tensor *t, float **out, bl_err *err);

BL_API_END
#endif
