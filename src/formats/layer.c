/* Generic code over a format's tensor table (bl_format_tensor, format.h): allocation, freeing,
 * validation of handed-over data, save, load, copy and the count of stored bits. A tabled
 * format's layer keeps its data struct and one prepared bl_signmat per sign tensor in a
 * bl_layer_impl (formats_internal.h); its forward, to_dense and fit are its own. */
#include "formats/formats_internal.h"
#include "formats/forward_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- tensor I/O: every tensor a layer reads is checked for presence, dtype, exact shape and
 * byte size before it is touched, and every error names the full tensor name (the caller adds
 * the file's) ---- */

static bl_status tensor_name(char *buf, const char *prefix, const char *part, bl_err *err) {
    int len = snprintf(buf, BL_MAX_NAME, "%s.%s", prefix, part);
    if (len < 0 || len >= BL_MAX_NAME)
        return bl_fail(err, BL_ERR_ARG, "%s.%s: tensor name longer than %d bytes", prefix, part,
                       BL_MAX_NAME - 1);
    return BL_OK;
}

static bool has_tensor(const bl_tensor_set *ts, const char *prefix, const char *part) {
    char name[BL_MAX_NAME];
    int len = snprintf(name, sizeof name, "%s.%s", prefix, part);
    return len > 0 && len < BL_MAX_NAME && bl_tensor_set_find(ts, name) != NULL;
}

static const char *dtype_name(bl_dtype t) {
    return (unsigned)t < BL_DT_COUNT ? bl_dtype_info(t)->name : "?";
}

/* "U8 [64, 22]" */
static void describe(char *buf, size_t cap, bl_dtype dt, int ndim, const int64_t *shape) {
    size_t len = (size_t)snprintf(buf, cap, "%s [", dtype_name(dt));
    for (int i = 0; i < ndim && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (len < cap) snprintf(buf + len, cap - len, "]");
}

/* Finds <prefix>.<part> and checks dtype, shape and byte count exactly. */
static bl_status find_checked(const bl_tensor_set *ts, const char *prefix, const char *part,
                              bl_dtype dt, int ndim, const int64_t *shape, const bl_tensor **out,
                              bl_err *err) {
    char name[BL_MAX_NAME], want[96], got[96];
    bl_status s = tensor_name(name, prefix, part, err);
    if (s) return s;
    describe(want, sizeof want, dt, ndim, shape);
    const bl_tensor *t = bl_tensor_set_find(ts, name);
    if (!t) return bl_fail(err, BL_ERR_FORMAT, "%s: missing tensor (expected %s)", name, want);
    bool ok = t->dtype == dt && t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (!ok) {
        describe(got, sizeof got, t->dtype, t->ndim < 0 || t->ndim > BL_MAX_DIMS ? 0 : t->ndim,
                 t->shape);
        return bl_fail(err, BL_ERR_FORMAT, "%s: expected %s, got %s", name, want, got);
    }
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++) numel *= (uint64_t)shape[i];
    size_t nbytes;
    if (!bl_dtype_nbytes(dt, numel, &nbytes) || nbytes != t->nbytes || (nbytes && !t->data))
        return bl_fail(err, BL_ERR_FORMAT, "%s: %zu bytes of data for %s", name, t->nbytes, want);
    *out = t;
    return BL_OK;
}

static bl_status check_padding(const uint8_t *bits, int64_t rows, int64_t used_bits,
                              const char *what, bl_err *err) {
    if (used_bits % 8 == 0) return BL_OK;
    int64_t row_bytes = (used_bits + 7) / 8;
    uint8_t pad = (uint8_t)(0xffu << (used_bits % 8));
    for (int64_t i = 0; i < rows; i++)
        if (bits[i * row_bytes + row_bytes - 1] & pad)
            return bl_fail(err, BL_ERR_FORMAT, "%s: row %lld has padding bits set (bits past %lld "
                           "must be 0)", what, (long long)i, (long long)used_bits);
    return BL_OK;
}

static bl_status load_bits(const bl_tensor_set *ts, const char *prefix, const char *part,
                          int64_t rows, int64_t used_bits, const uint8_t **out, bl_err *err) {
    int64_t row_bytes = (used_bits + 7) / 8, shape[2] = {rows, row_bytes};
    const bl_tensor *t;
    bl_status s = find_checked(ts, prefix, part, BL_DT_U8, 2, shape, &t, err);
    if (s) return s;
    const uint8_t *bits = t->data;
    char name[BL_MAX_NAME];
    tensor_name(name, prefix, part, NULL);
    s = check_padding(bits, rows, used_bits, name, err);
    if (s) return s;
    *out = bits;
    return BL_OK;
}

static bl_status load_f16(const bl_tensor_set *ts, const char *prefix, const char *part,
                         int64_t rows, int64_t cols, float **out, bl_err *err) {
    int64_t shape[2] = {rows, cols};
    const bl_tensor *t;
    bl_status s = find_checked(ts, prefix, part, BL_DT_F16, cols ? 2 : 1, shape, &t, err);
    if (s) return s;
    size_t n = (size_t)rows * (size_t)(cols ? cols : 1);
    float *v = bl_malloc_array(n, sizeof *v);
    if (!v) return bl_fail(err, BL_ERR_NOMEM, "%s.%s: out of memory", prefix, part);
    bl_dtype_info(BL_DT_F16)->to_f32(t->data, v, n);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) {
            free(v);
            return bl_fail(err, BL_ERR_FORMAT, "%s.%s: element %zu is not finite", prefix, part,
                           i);
        }
    *out = v;
    return BL_OK;
}

static bl_status save_f16(bl_st_writer *w, const char *prefix, const char *part, const float *v,
                         int64_t rows, int64_t cols, bl_err *err) {
    char name[BL_MAX_NAME];
    bl_status s = tensor_name(name, prefix, part, err);
    if (s) return s;
    size_t n = (size_t)rows * (size_t)(cols ? cols : 1);
    uint8_t *buf = bl_malloc_array(n, 2);
    if (!buf) return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", name);
    for (size_t i = 0; i < n; i++) { /* little-endian, as safetensors requires */
        uint16_t h = bl_f32_to_f16(v[i]);
        buf[2 * i] = (uint8_t)(h & 0xff);
        buf[2 * i + 1] = (uint8_t)(h >> 8);
    }
    int64_t shape[2] = {rows, cols};
    /* Copied: the writer then owns what it needs and the layer's lifetime does not matter. */
    s = bl_st_writer_add(w, name, BL_DT_F16, cols ? 2 : 1, shape, buf, n * 2, true, err);
    free(buf);
    return s;
}

static bl_status save_u8(bl_st_writer *w, const char *prefix, const char *part,
                        const uint8_t *bits, int64_t rows, int64_t row_bytes, bl_err *err) {
    char name[BL_MAX_NAME];
    bl_status s = tensor_name(name, prefix, part, err);
    if (s) return s;
    int64_t shape[2] = {rows, row_bytes};
    return bl_st_writer_add(w, name, BL_DT_U8, 2, shape, bits, (size_t)(rows * row_bytes), true,
                            err);
}

static bl_status round_f16(float *v, int64_t n, const char *what, bl_err *err) {
    for (int64_t i = 0; i < n; i++) {
        float r = bl_round_f16(v[i]);
        if (!isfinite(r))
            return bl_fail(err, BL_ERR_NUMERIC, "%s[%lld] = %g is not finite as FP16", what,
                           (long long)i, (double)v[i]);
        v[i] = r;
    }
    return BL_OK;
}

static bl_status need(const void *p, const char *what, bl_err *err) {
    return p ? BL_OK : bl_fail(err, BL_ERR_ARG, "%s is NULL", what);
}

static bl_status prepare_signs(bl_signmat *S, int64_t rows, int64_t cols, const uint8_t *bits,
                        bl_pool *pool, bl_err *err) {
    bl_signmat_init(S, rows, cols, bits);
    return bl_signmat_prepare(S, bl_cpu_best_isa(), pool, err);
}

static void release_bits(const bl_tensor_set *ts, const bl_signmat *S) {
    if (S->packed && S->bits && S->m > 0 && S->n > 0)
        bl_tensor_set_release(ts, S->bits, (size_t)(S->m * bl_sign_row_bytes(S->n)));
}


int64_t bl_dim_m(int64_t m, int64_t n, const bl_format_params *p) {
    (void)n, (void)p;
    return m;
}
int64_t bl_dim_n(int64_t m, int64_t n, const bl_format_params *p) {
    (void)m, (void)p;
    return n;
}
int64_t bl_dim_mid(int64_t m, int64_t n, const bl_format_params *p) {
    (void)m, (void)n;
    return p->mid;
}
int64_t bl_dim_rank_l(int64_t m, int64_t n, const bl_format_params *p) {
    (void)m, (void)n;
    return p->rank_l;
}
int64_t bl_dim_vector(int64_t m, int64_t n, const bl_format_params *p) {
    (void)m, (void)n, (void)p;
    return 0;
}

/* ---- walking the table ---- */

static int n_repeats(const bl_format_ops *f, const bl_format_params *p) {
    return f->repeats ? f->repeats(p) : 1;
}

static bool is_present(const bl_format_tensor *t, const bl_format_params *p) {
    return !t->present || t->present(p);
}

static bool is_stored(const bl_format_tensor *t, const bl_format_params *p) {
    return is_present(t, p) && (!t->stored || t->stored(p));
}

/* The buffer pointer of tensor t (repeat r) in data; NULL when a repeated tensor's array is
 * not allocated. */
static void **slot(const bl_format_ops *f, void *data, const bl_format_tensor *t, int r) {
    char *base = data;
    if (t->repeated) {
        base = *(char **)(base + f->repeat_offset);
        if (!base) return NULL;
        base += (size_t)r * f->repeat_size;
    }
    return (void **)(base + t->offset);
}

static bool *view_flag(const bl_format_ops *f, void *data) {
    return (bool *)((char *)data + f->view_offset);
}

/* Elements of the tensor in memory: rows × cols floats for F16 (cols 0: rows), packed bytes
 * for signs and codes. */
static int64_t t_rows(const bl_format_tensor *t, int64_t m, int64_t n, const bl_format_params *p) {
    return t->rows(m, n, p);
}
static int64_t t_cols(const bl_format_tensor *t, int64_t m, int64_t n, const bl_format_params *p) {
    return t->cols(m, n, p);
}
/* Bits of one row that carry data (signs and codes). */
static int code_width(const bl_format_tensor *t, const bl_format_params *p) {
    return t->kind == BL_FT_SIGNS ? 1 : t->code_bits ? t->code_bits : p->bits;
}
static int64_t used_bits(const bl_format_tensor *t, int64_t cols, const bl_format_params *p) {
    return cols * code_width(t, p);
}
static size_t buffer_bytes(const bl_format_tensor *t, int64_t m, int64_t n,
                           const bl_format_params *p) {
    const int64_t rows = t_rows(t, m, n, p), cols = t_cols(t, m, n, p);
    if (t->kind == BL_FT_F16) return (size_t)rows * (size_t)(cols ? cols : 1) * sizeof(float);
    return (size_t)rows * (size_t)((used_bits(t, cols, p) + 7) / 8);
}

/* The tensor's part name for repeat r: its "%d" replaced by r ("p%d.SA" → "p1.SA"). */
static void part_name(const bl_format_tensor *t, int r, char *buf, size_t cap) {
    const char *d = t->repeated ? strstr(t->part, "%d") : NULL;
    if (d) snprintf(buf, cap, "%.*s%d%s", (int)(d - t->part), t->part, r, d + 2);
    else snprintf(buf, cap, "%s", t->part);
}

uint64_t bl_format_stored_bits(const bl_format_ops *f, int64_t m, int64_t n,
                               const bl_format_params *p) {
    if (f->stored_bits) return f->stored_bits(m, n, p);
    uint64_t bits = 0;
    const int R = n_repeats(f, p);
    for (int i = 0; i < f->n_tensors; i++) {
        const bl_format_tensor *t = &f->tensors[i];
        if (!is_stored(t, p)) continue;
        const uint64_t rows = (uint64_t)t_rows(t, m, n, p), cols = (uint64_t)t_cols(t, m, n, p);
        const uint64_t width = t->kind == BL_FT_F16 ? 16u : (uint64_t)code_width(t, p);
        bits += (t->repeated ? (uint64_t)R : 1u) * rows * (cols ? cols : 1u) * width;
    }
    return bits;
}

/* ---- data structs ---- */

void bl_format_data_free(const bl_format_ops *f, void *data) {
    if (!data || !f->tensors) return;
    int64_t m, n;
    bl_format_params p;
    f->get_shape(data, &m, &n, &p);
    const bool view = *view_flag(f, data);
    const int R = n_repeats(f, &p);
    for (int i = 0; i < f->n_tensors; i++) {
        const bl_format_tensor *t = &f->tensors[i];
        for (int r = 0; r < (t->repeated ? R : 1); r++) {
            void **b = slot(f, data, t, r);
            if (b && !(view && t->kind != BL_FT_F16)) free(*b);
            if (b) *b = NULL;
        }
    }
    if (f->repeats) free(*(void **)((char *)data + f->repeat_offset));
    memset(data, 0, f->data_size);
}

/* A zeroed struct of the shape, with the repeat array (not the tensors) allocated. */
static bl_status shape_struct(const bl_format_ops *f, int64_t m, int64_t n,
                              const bl_format_params *p, const char *who, void *data,
                              bl_err *err) {
    memset(data, 0, f->data_size);
    bl_status s = f->check(m, n, p, who, err);
    if (s) return s;
    f->set_shape(data, m, n, p);
    if (f->repeats) {
        void *arr = calloc((size_t)f->repeats(p), f->repeat_size);
        if (!arr) return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", who);
        *(void **)((char *)data + f->repeat_offset) = arr;
    }
    return BL_OK;
}

static bl_status alloc_tensor(const bl_format_tensor *t, int64_t m, int64_t n,
                              const bl_format_params *p, void **b, const char *who, bl_err *err) {
    const size_t bytes = buffer_bytes(t, m, n, p);
    *b = calloc(bytes ? bytes : 1, 1);
    if (!*b) return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory (%zu bytes)", who, bytes);
    if (t->kind == BL_FT_F16 && t->fill != 0.0f)
        for (size_t k = 0; k < bytes / sizeof(float); k++) ((float *)*b)[k] = t->fill;
    return BL_OK;
}

bl_status bl_format_data_alloc(const bl_format_ops *f, int64_t m, int64_t n,
                               const bl_format_params *p, void *data, bl_err *err) {
    if (!f->tensors) return bl_fail(err, BL_ERR_UNSUPPORTED, "%s: no tensor table", f->name);
    bl_status s = shape_struct(f, m, n, p, f->name, data, err);
    const int R = n_repeats(f, p);
    for (int i = 0; i < f->n_tensors && !s; i++) {
        const bl_format_tensor *t = &f->tensors[i];
        if (!is_present(t, p)) continue;
        for (int r = 0; r < (t->repeated ? R : 1) && !s; r++)
            s = alloc_tensor(t, m, n, p, slot(f, data, t, r), f->name, err);
    }
    if (s) bl_format_data_free(f, data);
    return s;
}

/* ---- layers ---- */

static void impl_free(bl_layer_impl *q, const bl_format_ops *f) {
    if (!q) return;
    for (int k = 0; k < q->n_signs; k++) bl_signmat_release(&q->S[k]);
    free(q->S);
    if (q->data) bl_format_data_free(f, q->data);
    free(q->data);
    free(q);
}

void bl_layer_free(bl_linear *L) {
    impl_free(L->impl, L->ops);
    L->impl = NULL;
}

const void *bl_layer_data(const bl_linear *L) { return ((const bl_layer_impl *)L->impl)->data; }

/* Sign tensors of the layer, in table order within each repeat. */
static int count_signs(const bl_format_ops *f, const bl_format_params *p) {
    int k = 0;
    for (int i = 0; i < f->n_tensors; i++)
        if (f->tensors[i].kind == BL_FT_SIGNS && is_present(&f->tensors[i], p))
            k += f->tensors[i].repeated ? n_repeats(f, p) : 1;
    return k;
}

int bl_linear_sign_count(const bl_linear *L) {
    return L->ops && !bl_linear_is_dense(L) ? count_signs(L->ops, &L->params) : 0;
}

bool bl_linear_i8_affected(const bl_linear *L) {
    return bl_linear_sign_count(L) > 0 || (L->ops && L->ops->i8_inputs && L->ops->i8_inputs(L));
}

/* Moves data (validated) into a new impl of L with every sign tensor prepared for the kernels
 * (S in repeat-major table order); on failure nothing is taken. */
static bl_status attach(bl_linear *L, const bl_format_ops *f, const void *data, bl_pool *pool,
                        bl_err *err) {
    int64_t m, n;
    bl_format_params p;
    memset(&p, 0, sizeof p);
    f->get_shape(data, &m, &n, &p);
    bl_layer_impl *q = calloc(1, sizeof *q);
    const int ns = count_signs(f, &p);
    if (q) q->data = malloc(f->data_size);
    if (q && ns) q->S = calloc((size_t)ns, sizeof *q->S);
    if (!q || !q->data || (ns && !q->S)) {
        if (q) free(q->data), free(q->S);
        free(q);
        return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", f->name);
    }
    bl_status s = BL_OK;
    const int R = n_repeats(f, &p);
    for (int r = 0; r < R && !s; r++)
        for (int i = 0; i < f->n_tensors && !s; i++) {
            const bl_format_tensor *t = &f->tensors[i];
            if (t->kind != BL_FT_SIGNS || !is_present(t, &p) || (!t->repeated && r > 0)) continue;
            const uint8_t *bits = *slot(f, (void *)data, t, r);
            s = prepare_signs(&q->S[q->n_signs++], t_rows(t, m, n, &p), t_cols(t, m, n, &p),
                              bits, pool, err);
        }
    if (s) {
        for (int k = 0; k < q->n_signs; k++) bl_signmat_release(&q->S[k]);
        free(q->S), free(q->data), free(q);
        return s;
    }
    memcpy(q->data, data, f->data_size);
    L->ops = f;
    L->m = m;
    L->n = n;
    L->params = p;
    L->impl = q;
    return BL_OK;
}

bl_status bl_linear_from_data(bl_linear *L, const bl_format_ops *f, void *data, bl_err *err) {
    int64_t m, n;
    bl_format_params p;
    memset(&p, 0, sizeof p);
    f->get_shape(data, &m, &n, &p);
    bl_status s = f->check(m, n, &p, f->name, err);
    const int R = n_repeats(f, &p);
    char what[96], part[48];
    if (!s && f->repeats && !*(void **)((char *)data + f->repeat_offset))
        s = bl_fail(err, BL_ERR_ARG, "%s: its repeated tensors are NULL", f->name);
    for (int i = 0; i < f->n_tensors && !s; i++) /* every present buffer first */
        for (int r = 0; r < (f->tensors[i].repeated ? R : 1) && !s; r++) {
            if (!is_present(&f->tensors[i], &p)) continue;
            part_name(&f->tensors[i], r, part, sizeof part);
            snprintf(what, sizeof what, "%s %s", f->name, part);
            s = need(*slot(f, data, &f->tensors[i], r), what, err);
        }
    if (!s && f->normalize) f->normalize(data, &p);
    for (int i = 0; i < f->n_tensors && !s; i++)
        for (int r = 0; r < (f->tensors[i].repeated ? R : 1) && !s; r++) {
            const bl_format_tensor *t = &f->tensors[i];
            if (!is_present(t, &p)) continue;
            part_name(t, r, part, sizeof part);
            snprintf(what, sizeof what, "%s %s", f->name, part);
            const int64_t rows = t_rows(t, m, n, &p), cols = t_cols(t, m, n, &p);
            void *b = *slot(f, data, t, r);
            if (t->kind == BL_FT_F16) s = round_f16(b, rows * (cols ? cols : 1), what, err);
            else s = check_padding(b, rows, used_bits(t, cols, &p), what, err);
        }
    if (!s && f->validate) s = f->validate(data, f->name, err);
    if (!s) s = attach(L, f, data, NULL, err);
    if (!s) memset(data, 0, f->data_size); /* the layer owns the buffers now */
    return s;
}

bl_status bl_layer_save(const bl_linear *L, const char *prefix, bl_st_writer *w, bl_err *err) {
    const bl_format_ops *f = L->ops;
    void *data = ((const bl_layer_impl *)L->impl)->data;
    const bl_format_params *p = &L->params;
    const int R = n_repeats(f, p);
    char part[48];
    bl_status s = BL_OK;
    /* repeat-major: all tensors of repeat 0 (in table order), then repeat 1, ... */
    for (int r = 0; r < R && !s; r++)
        for (int i = 0; i < f->n_tensors && !s; i++) {
            const bl_format_tensor *t = &f->tensors[i];
            if (!is_stored(t, p) || (!t->repeated && r > 0)) continue;
            part_name(t, r, part, sizeof part);
            const int64_t rows = t_rows(t, L->m, L->n, p), cols = t_cols(t, L->m, L->n, p);
            const void *b = *slot(f, data, t, r);
            if (t->kind == BL_FT_F16) s = save_f16(w, prefix, part, b, rows, cols, err);
            else s = save_u8(w, prefix, part, b, rows, (used_bits(t, cols, p) + 7) / 8, err);
        }
    return s;
}

static bl_status load_tensor(const bl_format_ops *f, const bl_format_tensor *t, int r,
                             const char *prefix, const bl_tensor_set *ts, int64_t m, int64_t n,
                             const bl_format_params *p, void *data, bl_err *err) {
    char part[48];
    part_name(t, r, part, sizeof part);
    const int64_t rows = t_rows(t, m, n, p), cols = t_cols(t, m, n, p);
    void **b = slot(f, data, t, r);
    if (t->kind != BL_FT_F16) {
        const uint8_t *bits = NULL;
        bl_status s = load_bits(ts, prefix, part, rows, used_bits(t, cols, p), &bits, err);
        *b = (void *)bits; /* a view into the mapped file: never written or freed */
        return s;
    }
    if (!is_stored(t, p) && !has_tensor(ts, prefix, part)) /* not in this layout: its fill */
        return alloc_tensor(t, m, n, p, b, prefix, err);
    return load_f16(ts, prefix, part, rows, cols, (float **)b, err);
}

bl_status bl_layer_load(bl_linear *L, const char *prefix, const bl_tensor_set *ts, bl_err *err) {
    const bl_format_ops *f = L->ops;
    void *data = malloc(f->data_size);
    if (!data) return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", prefix);
    const bl_format_params p = L->params;
    bl_status s = shape_struct(f, L->m, L->n, &p, prefix, data, err);
    *view_flag(f, data) = true;
    const int R = n_repeats(f, &p);
    for (int r = 0; r < R && !s; r++) /* in the order save writes */
        for (int i = 0; i < f->n_tensors && !s; i++) {
            const bl_format_tensor *t = &f->tensors[i];
            if (!is_present(t, &p) || (!t->repeated && r > 0)) continue;
            s = load_tensor(f, t, r, prefix, ts, L->m, L->n, &p, data, err);
        }
    if (!s && f->validate) s = f->validate(data, prefix, err);
    if (!s) s = attach(L, f, data, ts->pool, err);
    if (s) {
        bl_format_data_free(f, data);
        free(data);
        return s;
    }
    free(data); /* attach copied the struct */
    /* once repacked, the canonical bits are read again only by to_dense, save and the scalar
     * reference: their pages are given back to the file */
    const bl_layer_impl *q = L->impl;
    for (int k = 0; k < q->n_signs; k++) release_bits(ts, &q->S[k]);
    return BL_OK;
}

bl_status bl_linear_copy(const bl_linear *src, bl_linear *dst, bl_err *err) {
    const bl_format_ops *f = src->ops;
    if (!f->tensors)
        return bl_fail(err, BL_ERR_UNSUPPORTED, "%s: layers of this format are not copied",
                       f->name);
    void *data = malloc(f->data_size);
    if (!data) return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", f->name);
    bl_status s = bl_format_data_alloc(f, src->m, src->n, &src->params, data, err);
    const void *from = ((const bl_layer_impl *)src->impl)->data;
    const int R = n_repeats(f, &src->params);
    for (int i = 0; i < f->n_tensors && !s; i++) {
        const bl_format_tensor *t = &f->tensors[i];
        if (!is_present(t, &src->params)) continue;
        for (int r = 0; r < (t->repeated ? R : 1); r++)
            memcpy(*slot(f, data, t, r), *slot(f, (void *)from, t, r),
                   buffer_bytes(t, src->m, src->n, &src->params));
    }
    if (!s) s = attach(dst, f, data, NULL, err);
    if (s) bl_format_data_free(f, data);
    free(data);
    return s;
}

bl_status bl_format_data_each(const bl_format_ops *f, const void *data, bl_format_tensor_fn fn,
                              void *ctx, bl_err *err) {
    if (!f->tensors) return bl_fail(err, BL_ERR_UNSUPPORTED, "%s: no tensor table", f->name);
    int64_t m, n;
    bl_format_params p;
    memset(&p, 0, sizeof p);
    f->get_shape(data, &m, &n, &p);
    const int R = n_repeats(f, &p);
    char part[48];
    bl_status s = BL_OK;
    for (int r = 0; r < R && !s; r++)
        for (int i = 0; i < f->n_tensors && !s; i++) {
            const bl_format_tensor *t = &f->tensors[i];
            if (!is_present(t, &p) || (!t->repeated && r > 0)) continue;
            void **b = slot(f, (void *)data, t, r);
            if (!b || !*b)
                return bl_fail(err, BL_ERR_ARG, "%s: tensor %s has no buffer", f->name, t->part);
            part_name(t, r, part, sizeof part);
            const bl_format_tensor_ref ref = {
                .t = t, .repeat = t->repeated ? r : 0, .part = part,
                .rows = t_rows(t, m, n, &p), .cols = t_cols(t, m, n, &p), .buf = *b,
                .bytes = buffer_bytes(t, m, n, &p)};
            s = fn(&ref, ctx, err);
        }
    return s;
}
