/* Layer-wise quantization over MPI ranks: the plan and the gather (quantize_dist.h), and for block
 * reconstruction the plan of one layer's fits and their exchange between all ranks. A rank sends
 * one message: a count, one fixed-size record per layer it fitted (index, format, shape,
 * parameters, fit result) and a safetensors image of those layers' tensors, named "p<index>".
 * The records are raw structs: every rank runs the same binary on the same architecture. */
#include "ptq/quantize_dist.h"

#include "bitllm/dist.h"
#include "model/model_internal.h"
#include "ptq/ptq_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int32_t index;
    char format[24];
    int64_t m, n;
    bl_format_params params;
    bl_layer_fit_result res;
} qd_record;

double qd_cost(const bl_layer_fit_opts *lo, int64_t m, int64_t n) {
    const double mn = (double)m * (double)n;
    const int64_t mid = bl_layer_mid(lo, m, n); /* 0: a format without a middle dimension */
    if (mid <= 0) return mn;
    const double k = (double)mid * (lo->method.params.paths > 1 ? lo->method.params.paths : 1);
    return mn * k + (double)(m + n) * k * k;
}

bl_status qd_begin(qd_ctx *d, const bl_model *src, const bl_layer_fit_opts *lo, bl_err *err) {
    memset(d, 0, sizeof *d);
    d->n = src->cfg.n_layers * BL_PROJ_COUNT;
    if (bl_dist_size() == 1) return BL_OK;
    double *cost = bl_malloc_array((size_t)d->n, sizeof *cost);
    d->owner = bl_malloc_array((size_t)d->n, sizeof *d->owner);
    d->res = calloc((size_t)d->n, sizeof *d->res);
    if (!cost || !d->owner || !d->res) {
        free(cost);
        qd_end(d);
        return bl_fail(err, BL_ERR_NOMEM, "out of memory for the rank plan");
    }
    for (int i = 0; i < d->n; i++) {
        const bl_linear *L = &src->layers[i / BL_PROJ_COUNT].proj[i % BL_PROJ_COUNT];
        cost[i] = qd_cost(lo, L->m, L->n);
    }
    bl_status s = bl_dist_assign(cost, d->n, bl_dist_size(), d->owner, NULL, err);
    free(cost);
    if (s) qd_end(d);
    return s;
}

bl_status qd_begin_layer(qd_ctx *d, const bl_model *src, const bl_quant_opts *o, int l,
                         const int64_t *mids, bl_err *err) {
    memset(d, 0, sizeof *d);
    d->n = src->cfg.n_layers * BL_PROJ_COUNT;
    if (bl_dist_size() == 1) return BL_OK;
    d->owner = bl_malloc_array((size_t)d->n, sizeof *d->owner);
    d->res = calloc((size_t)d->n, sizeof *d->res);
    if (!d->owner || !d->res) {
        qd_end(d);
        return bl_fail(err, BL_ERR_NOMEM, "out of memory for the rank plan");
    }
    for (int i = 0; i < d->n; i++) d->owner[i] = -1; /* other layers: nobody's */
    double cost[BL_PROJ_COUNT];
    for (int p = 0; p < BL_PROJ_COUNT; p++) {
        const bl_linear *L = &src->layers[l].proj[p];
        bl_layer_fit_opts lo;
        ptq_layer_opts(o, NULL, NULL, l, p, L->n, NULL, &lo);
        if (mids) lo.method.params.mid = mids[l * BL_PROJ_COUNT + p];
        cost[p] = qd_cost(&lo, L->m, L->n);
    }
    bl_status s = bl_dist_assign(cost, BL_PROJ_COUNT, bl_dist_size(),
                                 d->owner + l * BL_PROJ_COUNT, NULL, err);
    if (s) qd_end(d);
    return s;
}

bool qd_mine(const qd_ctx *d, int i) { return !d->owner || d->owner[i] == bl_dist_rank(); }

bool qd_layer_mine(const qd_ctx *d, int l) {
    for (int p = 0; p < BL_PROJ_COUNT; p++)
        if (qd_mine(d, l * BL_PROJ_COUNT + p)) return true;
    return false;
}

void qd_done(qd_ctx *d, int i, const bl_layer_fit_result *r) {
    if (d->res) d->res[i] = *r;
}

bool qd_writes(const qd_ctx *d) { return bl_dist_rank() == 0; }

/* This rank's message: [u64 count][count records][safetensors image]. */
static bl_status pack(const qd_ctx *d, const bl_linear *q, uint8_t **out, size_t *size,
                      bl_err *err) {
    uint64_t count = 0;
    for (int i = 0; i < d->n; i++) count += qd_mine(d, i);
    bl_st_writer *w;
    bl_status s = bl_st_writer_new(&w, err);
    if (s) return s;
    char prefix[32];
    for (int i = 0; i < d->n && !s; i++)
        if (qd_mine(d, i)) {
            snprintf(prefix, sizeof prefix, "p%d", i);
            s = q[i].ops->save(&q[i], prefix, w, err);
        }
    uint8_t *img = NULL;
    size_t img_n = 0;
    if (!s) s = bl_st_writer_finish_mem(w, &img, &img_n, err);
    bl_st_writer_free(w);
    if (s) return s;
    const size_t head = sizeof count + (size_t)count * sizeof(qd_record);
    uint8_t *buf = bl_malloc(head + img_n);
    if (!buf) {
        free(img);
        return bl_fail(err, BL_ERR_NOMEM, "out of memory for the fitted layers");
    }
    memcpy(buf, &count, sizeof count);
    qd_record *rec = (qd_record *)(void *)(buf + sizeof count);
    for (int i = 0, k = 0; i < d->n; i++) {
        if (!qd_mine(d, i)) continue;
        qd_record r;
        memset(&r, 0, sizeof r);
        r.index = i;
        snprintf(r.format, sizeof r.format, "%s", q[i].ops->name);
        r.m = q[i].m;
        r.n = q[i].n;
        r.params = q[i].params;
        r.res = d->res[i];
        memcpy(&rec[k++], &r, sizeof r);
    }
    memcpy(buf + head, img, img_n);
    free(img);
    *out = buf;
    *size = head + img_n;
    return BL_OK;
}

/* Rank 0: the layers of rank r's message into q. */
static bl_status unpack(qd_ctx *d, const bl_model *src, const bl_quant_opts *o, int r,
                        bl_linear *q, bl_err *err) {
    const uint8_t *buf = d->parts[r];
    const size_t size = d->sizes[r];
    uint64_t count;
    char name[32];
    snprintf(name, sizeof name, "the layers of rank %d", r);
    if (size < sizeof count) return bl_fail(err, BL_ERR_FORMAT, "%s: truncated message", name);
    memcpy(&count, buf, sizeof count);
    if (count > (uint64_t)d->n || size - sizeof count < count * sizeof(qd_record))
        return bl_fail(err, BL_ERR_FORMAT, "%s: bad layer count %llu", name,
                       (unsigned long long)count);
    const size_t head = sizeof count + (size_t)count * sizeof(qd_record);
    bl_status s = bl_safetensors_parse(name, buf + head, size - head, &d->recv, NULL, err);
    for (uint64_t k = 0; k < count && !s; k++) {
        qd_record rec;
        memcpy(&rec, buf + sizeof count + k * sizeof rec, sizeof rec);
        rec.format[sizeof rec.format - 1] = 0;
        const int i = rec.index;
        if (i < 0 || i >= d->n || d->owner[i] != r)
            return bl_fail(err, BL_ERR_FORMAT, "%s: projection %d was not assigned to it", name, i);
        const bl_linear *S = &src->layers[i / BL_PROJ_COUNT].proj[i % BL_PROJ_COUNT];
        bl_linear *L = &q[i];
        L->ops = bl_format_find(rec.format);
        if (!L->ops || rec.m != S->m || rec.n != S->n)
            return bl_fail(err, BL_ERR_FORMAT, "%s: projection %d has format '%s' and shape "
                           "%lldx%lld", name, i, rec.format, (long long)rec.m, (long long)rec.n);
        L->m = rec.m;
        L->n = rec.n;
        L->params = rec.params;
        char prefix[32];
        snprintf(prefix, sizeof prefix, "p%d", i);
        if ((s = L->ops->load(L, prefix, &d->recv, err))) {
            L->ops = NULL; /* nothing to free */
            return s;
        }
        d->res[i] = rec.res;
    }
    return s;
}

bl_status qd_gather(qd_ctx *d, const bl_model *src, const bl_quant_opts *o, bl_linear *q,
                    double *bits, double *weights, bl_err *err) {
    if (!d->owner) return BL_OK;
    uint8_t *msg = NULL;
    size_t n = 0;
    bl_status s = pack(d, q, &msg, &n, err);
    if (!s) s = bl_dist_gather_bytes(msg, n, &d->parts, &d->sizes, err);
    free(msg);
    if (s || bl_dist_rank() != 0) return s;
    for (int r = 1; r < bl_dist_size() && !s; r++) s = unpack(d, src, o, r, q, err);
    for (int i = 0; i < d->n && !s; i++) {
        if (d->owner[i] == 0) continue;
        const bl_linear *L = &q[i];
        const double mn = (double)L->m * (double)L->n;
        *bits += d->res[i].bpw * mn;
        *weights += mn;
        if (o->on_layer) {
            char name[96];
            bl_proj_name(i / BL_PROJ_COUNT, i % BL_PROJ_COUNT, name, sizeof name);
            o->on_layer(o->on_layer_ctx, name, L->m, L->n, &d->res[i]);
        }
    }
    return s;
}

bl_status qd_share(qd_ctx *d, const bl_model *src, const bl_quant_opts *o, bl_linear *q,
                   bl_err *err) {
    if (!d->owner) return BL_OK;
    const int N = bl_dist_size(), me = bl_dist_rank();
    uint8_t *msg = NULL;
    size_t n = 0;
    bl_status s = pack(d, q, &msg, &n, err);
    d->parts = calloc((size_t)N, sizeof *d->parts);
    d->sizes = calloc((size_t)N, sizeof *d->sizes);
    if (!s && (!d->parts || !d->sizes)) s = bl_fail(err, BL_ERR_NOMEM, "out of memory");
    for (int r = 0; r < N && !s; r++) { /* rank r's layers to everyone, in rank order */
        uint64_t len = n;
        s = bl_dist_bcast(&len, sizeof len, r, err);
        if (s) break;
        if (r == me) {
            d->parts[r] = msg;
            msg = NULL;
        } else if (len > SIZE_MAX / 2 || !(d->parts[r] = malloc(len ? (size_t)len : 1))) {
            s = bl_fail(err, BL_ERR_NOMEM, "out of memory for %llu bytes of rank %d's layers",
                        (unsigned long long)len, r);
            break;
        }
        d->sizes[r] = (size_t)len;
        s = bl_dist_bcast(d->parts[r], (size_t)len, r, err);
        if (!s && r != me) s = unpack(d, src, o, r, q, err);
    }
    free(msg);
    return s ? bl_fail_context(err, s, "sharing the fitted layers of %d ranks", N) : BL_OK;
}

void qd_end(qd_ctx *d) {
    free(d->owner);
    free(d->res);
    bl_tensor_set_free(&d->recv);
    bl_dist_parts_free(d->parts, d->sizes);
    memset(d, 0, sizeof *d);
}
