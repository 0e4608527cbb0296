/* Checkpoint files: safetensors (single or sharded HF directory), GGUF v2/v3, llama2.c .bin, and
 * the safetensors writer used for our own outputs.
 *
 * Every parser validates every size, count and offset against the file size before it touches the
 * bytes, so truncated or malicious files yield BL_ERR_FORMAT with a message naming the file. */
#ifndef BITLLM_IO_H
#define BITLLM_IO_H

#include "bitllm/tensor.h"

BL_API_BEGIN

/* A set of named tensors, usually views into one or more memory-mapped files that the set owns. */
typedef struct {
    int n, cap;
    bl_tensor *t;
    bl_mmap *maps;   /* files kept open for the lifetime of the set */
    int n_maps;
    void **owned;    /* heap buffers owned by the set (converted/dequantized tensors) */
    int n_owned;
    char **files;    /* the files the tensors came from, for messages */
    int n_files;
    int *file_of;    /* per tensor: its index in files, -1 if none was named */
    struct bl_pool *pool; /* threads for work done while loading from the set (not owned; NULL:
                             the calling thread) */
} bl_tensor_set;

const bl_tensor *bl_tensor_set_find(const bl_tensor_set *s, const char *name);
/* Appends a tensor view (copied struct; data is not copied). */
bl_status bl_tensor_set_add(bl_tensor_set *s, const bl_tensor *t, bl_err *err);
/* Hands a heap buffer to the set, freed with it. */
bl_status bl_tensor_set_own(bl_tensor_set *s, void *buf, bl_err *err);
bl_status bl_tensor_set_own_map(bl_tensor_set *s, bl_mmap *m, bl_err *err); /* takes ownership */
void bl_tensor_set_free(bl_tensor_set *s);
/* Names the file the tensors added from now on come from (the parsers call it). */
bl_status bl_tensor_set_begin_file(bl_tensor_set *s, const char *path, bl_err *err);
/* The file t (a tensor of s, or one with the same name) came from, or NULL if unknown. */
const char *bl_tensor_set_file(const bl_tensor_set *s, const bl_tensor *t);
/* Gives back the memory of [p, p+n) if it lies in one of the set's mapped files (bl_mmap_release:
 * the bytes are read again from the file if touched later), so streaming over a large model keeps
 * the resident size near one layer, and a repacked copy does not keep a second one alive. No-op
 * for heap buffers. */
void bl_tensor_set_release(const bl_tensor_set *s, const void *p, size_t n);
/* Makes every mapped file of the set private memory (bl_mmap_privatize); views stay valid. */
bl_status bl_tensor_set_privatize(bl_tensor_set *s, const char *what, bl_err *err);

/* ---- what a file is, from its first bytes (never its name) ---- */
typedef enum {
    BL_FILE_UNKNOWN = 0, BL_FILE_EMPTY, BL_FILE_DIR, BL_FILE_GGUF, BL_FILE_SAFETENSORS,
    BL_FILE_LLAMA2C, BL_FILE_LLAMA2C_TOKENIZER, BL_FILE_JSON, BL_FILE_ZIP, BL_FILE_PICKLE,
    BL_FILE_NPY,
} bl_file_kind;
#define BL_DETECT_BYTES 64 /* bytes of the head that detection looks at */
/* Kind of a file of size bytes whose first n bytes (n <= size) are head. A legacy llama2.c
 * checkpoint (no magic) is recognised by its 7 header fields being in range. */
bl_file_kind bl_detect_bytes(const uint8_t *head, size_t n, uint64_t size);
/* "a GGUF file", "a safetensors file", "a llama2.c checkpoint", ... */
const char *bl_file_kind_name(bl_file_kind k);
/* For error messages: what the content looks like ("starts with GGUF magic: a GGUF file?",
 * "starts with bytes 7f 45 4c 46 ..."). */
void bl_describe_content(const uint8_t *head, size_t n, uint64_t size, char *buf, size_t cap);
/* Kind of the file or directory at path; what (may be NULL) receives bl_describe_content's text.
 * Fails only when path cannot be opened. */
bl_status bl_detect_file(const char *path, bl_file_kind *kind, char *what, size_t cap,
                         bl_err *err);

/* ---- safetensors ---- */
/* Opens one .safetensors file and appends its tensors to set. If metadata_json is non-NULL it
 * receives a malloc'ed copy of the "__metadata__" object as JSON text (or NULL if absent). */
bl_status bl_safetensors_open(const char *path, bl_tensor_set *set, char **metadata_json,
                              bl_err *err);
/* The same from a file image in memory (path only names it in messages): the tensors are views
 * into data, which must outlive the set; the set does not own it. */
bl_status bl_safetensors_parse(const char *path, const uint8_t *data, size_t size,
                               bl_tensor_set *set, char **metadata_json, bl_err *err);
/* Opens the tensors of a Hugging Face model directory: model.safetensors, or the shards listed in
 * model.safetensors.index.json. */
bl_status bl_hf_open_tensors(const char *dir, bl_tensor_set *set, bl_err *err);

/* Streaming safetensors writer: tensors are added with their bytes (copied or referenced until
 * finish), then written in one pass to "<path>.tmp.<pid>" and renamed to path. */
typedef struct bl_st_writer bl_st_writer;
bl_status bl_st_writer_new(bl_st_writer **w, bl_err *err);
/* data must remain valid until bl_st_writer_finish when copy is false. */
bl_status bl_st_writer_add(bl_st_writer *w, const char *name, bl_dtype dtype, int ndim,
                           const int64_t *shape, const void *data, size_t nbytes, bool copy,
                           bl_err *err);
/* A tensor whose bytes are produced by fill(ctx, name, buf, nbytes) while the file is written,
 * so generated tensors never need to be in memory all at once. */
typedef void (*bl_st_fill_fn)(void *ctx, const char *name, void *buf, size_t nbytes);
bl_status bl_st_writer_add_lazy(bl_st_writer *w, const char *name, bl_dtype dtype, int ndim,
                                const int64_t *shape, size_t nbytes, bl_st_fill_fn fill,
                                void *ctx, bl_err *err);
/* Optional string->string metadata stored under "__metadata__". */
bl_status bl_st_writer_meta(bl_st_writer *w, const char *key, const char *value, bl_err *err);
bl_status bl_st_writer_finish(bl_st_writer *w, const char *path, bl_err *err);
/* The same file image in memory (malloc'ed into *data, caller frees), e.g. to send it. */
bl_status bl_st_writer_finish_mem(bl_st_writer *w, uint8_t **data, size_t *size, bl_err *err);
void bl_st_writer_free(bl_st_writer *w);

/* ---- NumPy .npy arrays ---- */
/* What a .npy header says. data_offset/nbytes locate the array in the image. */
typedef struct {
    char descr[8];       /* the dtype as written, e.g. "<f4", "<u2" */
    char kind;           /* 'f' float, 'i' signed integer, 'u' unsigned integer */
    int itemsize;        /* bytes per element */
    bl_dtype dtype;      /* BL_DT_F16/F32/F64, BL_DT_I32/I64; BL_DT_COUNT for the other integers */
    bool fortran_order;
    int ndim;
    int64_t shape[BL_MAX_DIMS];
    uint64_t numel;
    size_t data_offset, nbytes;
} bl_npy_header;
/* Parses and validates the header of a .npy image held in memory (versions 1.0-3.0; little-endian
 * or byte-order-free float16/32/64 and 8..64-bit signed/unsigned integers; the data must fill the
 * rest of the image exactly). Readers check `kind`/`itemsize` for what they accept. `what` names the source in
 * error messages (a path; NULL = "(memory)"). Never reads outside [image, image + len). */
bl_status bl_npy_parse(const void *image, size_t len, const char *what, bl_npy_header *h,
                       bl_err *err);
/* The array of a float .npy image as a new f32 buffer in row-major (C) order (caller frees);
 * an integer array is refused with BL_ERR_UNSUPPORTED. */
bl_status bl_npy_to_f32(const void *image, size_t len, const char *what, float **out,
                        bl_npy_header *h, bl_err *err);
/* The same from a file. */
bl_status bl_npy_read_f32(const char *path, float **out, bl_npy_header *h, bl_err *err);
/* Writes a float32 C-order array of the given shape (version 1.0 header), atomically. */
bl_status bl_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape,
                           bl_err *err);

/* ---- GGUF ---- */
typedef enum {
    BL_GGUF_U8 = 0, BL_GGUF_I8 = 1, BL_GGUF_U16 = 2, BL_GGUF_I16 = 3, BL_GGUF_U32 = 4,
    BL_GGUF_I32 = 5, BL_GGUF_F32 = 6, BL_GGUF_BOOL = 7, BL_GGUF_STRING = 8, BL_GGUF_ARRAY = 9,
    BL_GGUF_U64 = 10, BL_GGUF_I64 = 11, BL_GGUF_F64 = 12,
} bl_gguf_type;

typedef struct { const char *ptr; uint64_t len; } bl_str; /* not NUL-terminated; points into file */

typedef struct {
    char *key;           /* NUL-terminated copy */
    bl_gguf_type type;
    union {
        uint64_t u64;    /* all unsigned integer types and bool */
        int64_t i64;     /* all signed integer types */
        double f64;      /* F32 and F64 */
        bl_str str;
        struct {
            bl_gguf_type type;   /* element type (nested arrays are rejected) */
            uint64_t n;
            const uint8_t *data; /* numeric elements, packed little-endian, maybe unaligned */
            bl_str *strs;        /* string elements (n entries), NULL for numeric arrays */
        } arr;
    } v;
} bl_gguf_kv;

typedef struct {
    char *path;
    uint32_t version;
    uint64_t n_kv;
    bl_gguf_kv *kv;
    size_t alignment;
    bl_tensor_set tensors;   /* shapes reversed into row-major order (shape[0] slowest) */
} bl_gguf;

bl_status bl_gguf_open(const char *path, bl_gguf *g, bl_err *err);
/* The same from a file image in memory (path names it in messages); data must outlive g. */
bl_status bl_gguf_parse(const char *path, const uint8_t *data, size_t size, bl_gguf *g,
                        bl_err *err);
void bl_gguf_close(bl_gguf *g);
const bl_gguf_kv *bl_gguf_find(const bl_gguf *g, const char *key);
/* Typed getters: false if missing or of an incompatible type. Integers of any width convert. */
bool bl_gguf_get_int(const bl_gguf *g, const char *key, int64_t *out);
bool bl_gguf_get_float(const bl_gguf *g, const char *key, double *out);
bool bl_gguf_get_bool(const bl_gguf *g, const char *key, bool *out);
bool bl_gguf_get_str(const bl_gguf *g, const char *key, bl_str *out);
/* Bytes of one element of a fixed-size GGUF type; 0 for strings, arrays and unknown types. */
size_t bl_gguf_type_size(bl_gguf_type t);
/* Element i of a numeric array kv, converted. */
double bl_gguf_arr_float(const bl_gguf_kv *kv, uint64_t i);
int64_t bl_gguf_arr_int(const bl_gguf_kv *kv, uint64_t i);

/* Writes a GGUF v3 file holding only the metadata of g whose keys start with prefix (no
 * tensors), atomically. Used to keep a GGUF model's tokenizer beside a converted checkpoint. */
bl_status bl_gguf_write_metadata(const bl_gguf *g, const char *prefix, const char *path,
                                 bl_err *err);

/* ---- llama2.c ---- */
typedef struct {
    int dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
    bool shared_classifier;
    int version;          /* 0 = legacy header, 1/2 = versioned export formats */
} bl_llama2c_header;

/* Opens a llama2.c checkpoint; appends its tensors to set under GGUF names ("token_embd.weight",
 * "blk.N.attn_q.weight", "blk.N.attn_norm.weight", "output_norm.weight", "output.weight", ...),
 * all F32 views into the mapped file. Q/K rows stay in llama2.c (interleaved RoPE) order. */
bl_status bl_llama2c_open(const char *path, bl_llama2c_header *hdr, bl_tensor_set *set,
                          bl_err *err);
/* The same from a file image in memory (path names it in messages); the F32 tensors are views
 * into data, which must outlive the set (dequantized v2 weights are owned by the set). */
bl_status bl_llama2c_parse(const char *path, const uint8_t *data, size_t size,
                           bl_llama2c_header *hdr, bl_tensor_set *set, bl_err *err);
/* Whether the n bytes at head start with a header the reader accepts (magic and version, or
 * legacy fields in range). Says nothing about the weights that should follow. */
bool bl_llama2c_header_valid(const uint8_t *head, size_t n);

BL_API_END
#endif
