/* Linear-layer weight formats. A linear layer maps x (n inputs) to y (m outputs); the weight W is
 * m×n row-major (PyTorch/safetensors convention). Every format is registered once, in the table
 * of src/formats/registry.c, through a bl_format_ops entry.
 *
 * Packed sign matrices (canonical layout, in memory and on disk, independent of the CPU):
 * row-major, each of the `rows` rows takes row_bytes = ceil(cols/8) bytes; bit (j & 7) of byte
 * (j >> 3) is 1 when S[i][j] = −1 and 0 when S[i][j] = +1 (sign(0) := +1). Padding bits are 0.
 * This is the layout of the released OneBit checkpoints (bit 1 = −1, LSB first). */
#ifndef BITLLM_FORMAT_H
#define BITLLM_FORMAT_H

#include "bitllm/io.h"
#include "bitllm/kernels.h"

BL_API_BEGIN

static inline int64_t bl_sign_row_bytes(int64_t cols) { return (cols + 7) / 8; }
static inline int bl_sign_get(const uint8_t *bits, int64_t row_bytes, int64_t i, int64_t j) {
    return (bits[i * row_bytes + (j >> 3)] >> (j & 7)) & 1 ? -1 : 1;
}

/* The largest middle dimension (params.mid of a factored format) that fits and checkpoints
 * accept. It is not tied
 * to min(m, n): a layer may have a middle wider than its inputs or outputs. */
#define BL_MAX_MID ((int64_t)1 << 24)

/* Parameters a format may use; unused fields are ignored. Which fields a format reads, their
 * names in a method spec and in quantization_config, defaults and ranges are given by the
 * format's parameter schema (bl_format_param below), never by code outside src/formats. */
typedef struct {
    int bits;       /* bits per weight code */
    int group;      /* input columns per scale group */
    int64_t mid;    /* middle dimension of a factored format (0: from a bpw target) */
    int rank_l;     /* envelope rank of a factored format's scales */
    int paths;      /* number of summed factorizations (paths) */
    bool post_ln;   /* parameter-free LayerNorm over the m outputs */
} bl_format_params;

/* Options of a quantization run (library fields and CLI flags) that only some formats read. A
 * format says which it reads (bl_format_ops.opts_used); every caller that must refuse an option
 * a method would ignore asks the registry (bl_method_uses). */
typedef enum {
    BL_QP_BPW,              /* bpw: size target of a format with a middle dimension */
    BL_QP_SVID,             /* fit.nmf: onebit's SVID by NMF or SVD */
    BL_QP_ENVELOPE_RANK,    /* the rank_l parameter */
    BL_QP_PATHS,            /* the paths parameter */
    BL_QP_ACTIVATION_AWARE, /* activation_aware */
    BL_QP_ADAM_STEPS,       /* fit.adam_steps */
    BL_QP_GROUP,            /* the group parameter */
    BL_QP_CALIB,            /* calib_ids, out_importance */
    BL_QP_ITERS,            /* fit.iters */
    BL_QP_SEED,             /* fit.seed */
    BL_QP_COUNT
} bl_qparam;
#define BL_QP_BIT(p) (1u << (p))
/* The option's name as a JSON key ("envelope_rank", "group", ...). */
const char *bl_qparam_name(bl_qparam p);

/* One entry of a format's parameter schema. */
typedef enum { BL_FPT_INT, BL_FPT_I64, BL_FPT_BOOL } bl_fparam_type;
typedef struct {
    const char *key;     /* in a method spec and in quantization_config ("bits", "rank_l") */
    const char *alias;   /* another spelling accepted in a method spec ("rank"), or NULL */
    bl_fparam_type type;
    size_t offset;       /* offsetof(bl_format_params, field) */
    int64_t def, lo, hi; /* default of a method spec; accepted range (specs and checkpoints) */
    int flag;            /* bl_qparam of the CLI option that also sets it, or -1 */
    const char *help;
} bl_format_param;

/* The value of one schema parameter in p. */
int64_t bl_format_param_get(const bl_format_param *d, const bl_format_params *p);

/* A short name standing for a spec of the format ("rtn2" = "rtn:bits=2"). */
typedef struct {
    const char *name;
    const char *params;  /* "bits=2" */
} bl_format_alias;

struct bl_fit_opts;
typedef struct bl_linear bl_linear;
typedef struct bl_format_ops bl_format_ops;

/* ---- a format's tensor table ----
 * Every tensor a layer of the format holds, with its kind and shape as functions of (m, n,
 * params). From it generic code (src/formats/layer.c) allocates, validates, frees, saves, loads
 * (dtype and shape checked, the error naming tensor and file), copies a layer and counts its
 * stored bits; a format writes none of that itself. In memory each tensor is a buffer pointer
 * (uint8_t * or float *) in the format's data struct, the struct `data` returns. */
typedef enum {
    BL_FT_SIGNS, /* packed signs in the canonical layout, U8 {rows, ceil(cols/8)}; 1 bit each.
                  * Prepared for the sign kernels at attach; a loaded one stays a view into the
                  * mapped file. */
    BL_FT_CODES, /* b-bit codes packed LSB first (a code may straddle two bytes), b = the
                  * entry's code_bits or else params.bits: U8 {rows, ceil(cols·b/8)}, padding
                  * bits 0; a loaded one stays a view. */
    BL_FT_F16,   /* FP16 values held as float, F16 {rows, cols} (cols 0: a vector F16 {rows});
                  * handed-over values are rounded to FP16, loaded ones must be finite */
} bl_format_tensor_kind;

typedef int64_t (*bl_dim_fn)(int64_t m, int64_t n, const bl_format_params *p);
/* Dimensions most tables use. */
int64_t bl_dim_m(int64_t m, int64_t n, const bl_format_params *p);
int64_t bl_dim_n(int64_t m, int64_t n, const bl_format_params *p);
int64_t bl_dim_mid(int64_t m, int64_t n, const bl_format_params *p);
int64_t bl_dim_rank_l(int64_t m, int64_t n, const bl_format_params *p);
int64_t bl_dim_vector(int64_t m, int64_t n, const bl_format_params *p); /* 0: a vector */

typedef struct {
    const char *part;    /* "<prefix>.<part>"; a repeated one has a %d for the repeat ("p%d.SA") */
    bl_format_tensor_kind kind;
    bl_dim_fn rows, cols;
    size_t offset;       /* of its buffer pointer in the data struct (repeated: in one element) */
    bool repeated;       /* one per repeat (see bl_format_ops.repeats) */
    bool (*present)(const bl_format_params *p);  /* NULL: always */
    /* NULL: stored whenever present. When it returns false the tensor is in memory (filled
     * with `fill`) but not in files; a file that has it anyway (an older layout) is read. */
    bool (*stored)(const bl_format_params *p);
    float fill;
    int code_bits;       /* BL_FT_CODES of a fixed width (1..8); 0: params.bits */
} bl_format_tensor;
/* A table entry that is always present and stored (others spell out .present / .stored). */
#define BL_TENSOR(part_, kind_, rows_, cols_, offset_) \
    {.part = (part_), .kind = (kind_), .rows = (rows_), .cols = (cols_), .offset = (offset_)}

/* A format's traits record: everything the library knows about one weight format. Registered
 * once, in the table of src/formats/registry.c. */
struct bl_format_ops {
    const char *name; /* "dense", "onebit", "rtn", ... (the registry's key) */
    const char *desc; /* one line for `bitllm formats` */
    /* Parameter schema (NULL/0: none) and short names for common parameter sets. */
    const bl_format_param *params;
    int n_params;
    const bl_format_alias *aliases;
    int n_aliases;
    /* The bl_qparam options (BL_QP_BIT mask) a fit with these parameters reads; NULL = none. */
    unsigned (*opts_used)(const bl_format_params *p);
    /* The format has a middle dimension (params.mid) that a bpw target sets: the largest mid
     * whose stored_bits fit the target (bl_format_mid_for_bpw, a monotone search). */
    bool mid_from_bpw;
    /* Its stored bpw for each layer's shape is the default bpw target of the formats with a
     * middle dimension (bpw 0 in the options); its name is the keyword a bpw option accepts for
     * that target (bl_bpw_parse). One format of the registry sets it. */
    bool bpw_reference;
    /* The training engine has an entry for it (src/nn/nn_formats.c): distillation and block
     * reconstruction train its layers. tests/test_nn.c checks that the two agree. */
    bool trainable;
    /* The method spec `bitllm compare` runs for it by default ("rtn1"), in registry order;
     * NULL: not run by default (bl_compare_default_methods). */
    const char *compare_default;
    /* The tensor table (NULL for dense, whose one tensor is a view of the checkpoint's). */
    const bl_format_tensor *tensors;
    int n_tensors;
    /* The data struct: its size, the offset of its `bool view` (loaded sign/code buffers point
     * into a file and are not freed), and where repeated tensors live: an array of repeats(p)
     * elements of repeat_size bytes whose pointer is at repeat_offset (e.g. paths). */
    size_t data_size, view_offset;
    int (*repeats)(const bl_format_params *p); /* NULL: no repeated tensors */
    size_t repeat_offset, repeat_size;
    /* The layer's shape into a zeroed data struct, and back (the params a layer records). */
    void (*set_shape)(void *data, int64_t m, int64_t n, const bl_format_params *p);
    void (*get_shape)(const void *data, int64_t *m, int64_t *n, bl_format_params *p);
    /* Rejects shapes and parameters the format cannot hold; `who` starts the message. */
    bl_status (*check)(int64_t m, int64_t n, const bl_format_params *p, const char *who,
                       bl_err *err);
    /* Optional: brings handed-over data into its stored form before it is validated (e.g. a
     * product of two scales that only the product of matters, merged into one). */
    void (*normalize)(void *data, const bl_format_params *p);
    /* Optional: checks of the values the table cannot express (e.g. codes a format never
     * writes), run on handed-over and on loaded data after the generic checks. */
    bl_status (*validate)(const void *data, const char *who, bl_err *err);
    /* Exact number of bits this format stores for an m×n layer with params p (everything the
     * layer needs: sign bits, codes, FP16 vectors); bpw = stored_bits / (m·n). Tabled formats
     * leave it NULL: the table counts (bl_format_stored_bits). For "dense" the dtype's width is
     * taken from p->bits. Non-decreasing in p->mid. */
    uint64_t (*stored_bits)(int64_t m, int64_t n, const bl_format_params *p);
    /* Fits W (m×n row-major f32) with params p (mid resolved) into out; NULL: not fittable. */
    bl_status (*fit)(const float *W, int64_t m, int64_t n, const bl_format_params *p,
                     const struct bl_fit_opts *fo, bl_linear *out, bl_err *err);
    /* Random data of exactly the fitted shapes (benchmarks), drawn from seed. */
    bl_status (*random)(int64_t m, int64_t n, const bl_format_params *p, uint64_t seed,
                        bl_linear *out, bl_err *err);
    /* y (T×m) = x (T×n) · Ŵᵀ. work holds workspace_floats(L, T) floats (kernels never allocate).
     * The threads of ex's pool split output rows or tokens, and its ISA picks the kernels (ex may
     * be NULL: one thread, the default ISA); results do not depend on the thread count. */
    void (*forward)(const bl_linear *L, const float *x, int64_t T, float *y, float *work,
                    const bl_exec *ex);
    size_t (*workspace_floats)(const bl_linear *L, int64_t T);
    /* Optional: whether forward's own products (besides sign matrices) take int8 inputs under
     * BL_TABLES_I8 (qsym's q8_0 / q4_0 layouts); NULL: they do not. */
    bool (*i8_inputs)(const bl_linear *L);
    /* Ŵ as a dense m×n f32 matrix (for tests, rel_err and conversion). */
    bl_status (*to_dense)(const bl_linear *L, float *W, bl_err *err);
    /* Optional: row i of Ŵ (n floats), e.g. an embedding lookup; NULL if the format has none. */
    void (*get_row)(const bl_linear *L, int64_t i, float *row);
    /* Writes the layer's tensors as "<prefix>.<part>" (e.g. "model.layers.0.mlp.up_proj.sign"). */
    bl_status (*save)(const bl_linear *L, const char *prefix, bl_st_writer *w, bl_err *err);
    /* Reads the layer from ts; L->m, L->n, L->params and L->ops are set by the caller. Every
     * tensor's dtype and shape is validated. Sign bits stay views into ts when possible; their
     * repacking for the kernels uses ts->pool's threads. */
    bl_status (*load)(bl_linear *L, const char *prefix, const bl_tensor_set *ts, bl_err *err);
    void (*free_impl)(bl_linear *L);
    /* The format's public data struct (bl_onebit, bl_dbf, ...) of a layer, read-only. */
    const void *(*data)(const bl_linear *L);
    /* Relative tolerance of forward() against x·to_dense()ᵀ, used by the format tests. */
    double forward_tol;
};
/* save, load, free_impl, data of a tabled format: the generic code of src/formats/layer.c. */
#define BL_FORMAT_TABLE_OPS                                                                      \
    .save = bl_layer_save, .load = bl_layer_load, .free_impl = bl_layer_free,                    \
    .data = bl_layer_data
bl_status bl_layer_save(const bl_linear *L, const char *prefix, bl_st_writer *w, bl_err *err);
bl_status bl_layer_load(bl_linear *L, const char *prefix, const bl_tensor_set *ts, bl_err *err);
void bl_layer_free(bl_linear *L);
const void *bl_layer_data(const bl_linear *L);

struct bl_linear {
    const bl_format_ops *ops;
    int64_t m, n;
    bl_format_params params;
    void *impl; /* format-private data (see the structs below for the quantized formats) */
};

/* The registry. */
const bl_format_ops *bl_format_find(const char *name);
const bl_format_ops *const *bl_format_list(int *count);
bool bl_linear_is_dense(const bl_linear *L);
/* Sign matrices the layer multiplies by (the products BL_TABLES_I8 changes); 0 for dense layers. */
int bl_linear_sign_count(const bl_linear *L);
/* Whether BL_TABLES_I8 changes the layer's products (sign matrices, or the i8_inputs trait). */
bool bl_linear_i8_affected(const bl_linear *L);
bool bl_format_is_dense(const bl_format_ops *f);

/* The keyword a bpw option accepts besides a number: the name of the bpw_reference format
 * ("onebit"), standing for the bpw it stores for each layer's shape. */
const char *bl_bpw_keyword(void);
/* A bpw target from its text: a number in (0, hi], or the keyword (→ 0: the reference format's
 * bpw per layer). BL_ERR_ARG naming the text otherwise. */
bl_status bl_bpw_parse(const char *text, double hi, double *bpw, bl_err *err);
/* The method specs `bitllm compare` runs by default, comma-separated ("rtn1,onebit,..."):
 * each format's compare_default, in registry order. */
void bl_compare_default_methods(char *buf, size_t cap);

/* The largest middle dimension in [1, BL_MAX_MID] whose stored bits (the format's stored_bits,
 * p's other fields) are at most bpw·m·n; 1 when even that does not fit (then above the target).
 * The one inverse of the cost formula: FP16 vectors are counted (bitllm's convention; the
 * reference code's k = ⌊b·mn/(m+n)⌋ counts sign bits only), and the middle is not capped at
 * min(m, n) (a wider middle still adds sign bits that lower the error). */
int64_t bl_format_mid_for_bpw(const bl_format_ops *f, int64_t m, int64_t n,
                              const bl_format_params *p, double bpw);

/* ---- methods: a format plus its parameters ----
 * Spec syntax: "name[:key=value,...]" with the format's schema keys, e.g. "rtn:bits=2,group=64",
 * "dbf:mid=64", or an alias ("rtn2"; "rtn2:group=64"). Unset keys get the schema's
 * defaults. */
typedef struct {
    const bl_format_ops *format;
    bl_format_params params;
} bl_method;

bl_status bl_method_parse(const char *spec, bl_method *out, bl_err *err);
/* Sets the parameter that CLI option `flag` stands for; BL_ERR_ARG when the format has none. */
bl_status bl_method_set_flag(bl_method *m, bl_qparam flag, int64_t value, bl_err *err);
/* The name a checkpoint records: the first alias whose parameters match, else the format name. */
void bl_method_name(const bl_method *m, char *buf, size_t cap);
/* "rtn:bits=2,group=128": every schema parameter, in schema order. */
void bl_method_spec(const bl_method *m, char *buf, size_t cap);
/* Whether the method reads option p: fitted, or with random factors (which read only what
 * fixes the shapes, and the seed). */
bool bl_method_uses(const bl_method *m, bool random_factors, bl_qparam p);
/* The registry's formats that read p, comma-separated ("none" if none). */
void bl_qparam_users(bl_qparam p, bool random_factors, char *buf, size_t cap);

/* The format's cost formula: its stored_bits, or what its tensor table stores. */
uint64_t bl_format_stored_bits(const bl_format_ops *f, int64_t m, int64_t n,
                               const bl_format_params *p);
static inline double bl_linear_bpw(const bl_linear *L) {
    return (double)bl_format_stored_bits(L->ops, L->m, L->n, &L->params) /
           ((double)L->m * (double)L->n);
}
void bl_linear_free(bl_linear *L);

/* ---- generic code over a format's tensor table ----
 * A data struct (bl_onebit, bl_dbf, ... or a format's private one) of shape m×n with params p:
 * every present tensor a zeroed buffer (fill for unstored ones). data must be data_size bytes. */
bl_status bl_format_data_alloc(const bl_format_ops *f, int64_t m, int64_t n,
                               const bl_format_params *p, void *data, bl_err *err);
/* Frees what the data struct owns (not the buffers of a view) and zeroes it. */
void bl_format_data_free(const bl_format_ops *f, void *data);
/* Wraps a data struct into a layer: its shape checked, every present buffer non-NULL, padding
 * bits 0, F16 values rounded to FP16 (normalize first). The layer takes the buffers and the
 * struct is zeroed; on failure the caller keeps them. */
bl_status bl_linear_from_data(bl_linear *L, const bl_format_ops *f, void *data, bl_err *err);
/* A deep copy of a tabled layer (its own buffers, no view); BL_ERR_UNSUPPORTED for dense. */
bl_status bl_linear_copy(const bl_linear *src, bl_linear *dst, bl_err *err);
/* One present tensor of a data struct, as bl_format_data_each hands it over. */
typedef struct {
    const bl_format_tensor *t; /* its table entry */
    int repeat;                /* 0 for a tensor that is not repeated */
    const char *part;          /* its part name with the repeat filled in ("p1.SA") */
    int64_t rows, cols;        /* as in the table (cols 0: a vector) */
    void *buf;                 /* packed bytes (signs, codes) or rows·max(cols, 1) floats (F16) */
    size_t bytes;              /* of buf */
} bl_format_tensor_ref;
typedef bl_status (*bl_format_tensor_fn)(const bl_format_tensor_ref *ref, void *ctx,
                                         bl_err *err);
/* Calls fn for every present tensor of data (a data struct of format f) in the order of a
 * layer's prepared sign matrices: repeat-major, table order within a repeat, a tensor that is
 * not repeated with repeat 0. Stops at the first error. BL_ERR_UNSUPPORTED without a table. */
bl_status bl_format_data_each(const bl_format_ops *f, const void *data, bl_format_tensor_fn fn,
                              void *ctx, bl_err *err);

/* ---- dense (F32 / F16 / BF16 view of a checkpoint tensor) ---- */
/* Wraps a 2-D tensor (not copied: it must outlive L). */
bl_status bl_linear_dense_init(bl_linear *L, const bl_tensor *w, bl_err *err);
/* The stored bytes of a dense layer (false for other formats). */
bool bl_linear_dense_bytes(const bl_linear *L, const void **data, size_t *nbytes);

/* ---- the quantized formats' data ----
 * Each quantized format with a public data struct (what its fit produces, what
 * bl_linear_from_<name> wraps into a layer) declares it, with its fit and random-factor entry
 * points, in its own header include/bitllm/formats/<name>.h. Vectors are float in memory but hold
 * FP16-representable values (they are stored as F16), so a fitted layer and its saved/loaded copy
 * compute identical outputs. */

BL_API_END
#endif
