/* Elementary layers of the decoder as _forward/_backward pairs, written over `real` and compiled
 * once per precision (see nn.h). Rows are independent and split across threads; reductions over
 * tokens (parameter gradients) run serially in token order, so the result never depends on the
 * thread count. Per-row statistics (norms, softmax sums) are accumulated in double. */

/* ---- token embedding ---- */

void FN(nn_embedding_forward)(real *x, const int32_t *tok, int64_t N, const real *E, int D) {
    for (int64_t t = 0; t < N; t++) memcpy(x + t * D, E + (size_t)tok[t] * D, sizeof(real) * D);
}

void FN(nn_embedding_backward)(real *dE, const int32_t *tok, int64_t N, const real *dx, int D) {
    /* Serial: the same token may appear in several rows. */
    for (int64_t t = 0; t < N; t++) {
        real *row = dE + (size_t)tok[t] * D;
        for (int i = 0; i < D; i++) row[i] += dx[t * D + i];
    }
}

/* ---- RMSNorm: y = x·rstd·w ---- */

void FN(nn_rmsnorm_forward)(real *y, real *rstd, const real *x, const real *w, int64_t N, int D,
                            double eps) {
#pragma omp parallel for schedule(static) if (N * D >= 32768)
    for (int64_t t = 0; t < N; t++) {
        const real *xr = x + t * D;
        double ss = 0;
        for (int i = 0; i < D; i++) ss += (double)xr[i] * xr[i];
        const real r = (real)(1.0 / sqrt(ss / D + eps));
        rstd[t] = r;
        for (int i = 0; i < D; i++) y[t * D + i] = xr[i] * r * w[i];
    }
}

/* ∂y_i/∂x_j = r·w_i·δ_ij − r³/D·w_i·x_i·x_j, so dx = r·(w⊙dy) − (r³/D)·x·Σ_i w_i dy_i x_i. */
void FN(nn_rmsnorm_backward)(real *dx, real *dw, const real *dy, const real *x, const real *w,
                             const real *rstd, int64_t N, int D) {
#pragma omp parallel for schedule(static) if (N * D >= 32768)
    for (int64_t t = 0; t < N; t++) {
        const real *xr = x + t * D, *dyr = dy + t * D;
        const double r = rstd[t];
        double dot = 0;
        for (int i = 0; i < D; i++) dot += (double)w[i] * dyr[i] * xr[i];
        const double c = r * r * r * dot / D;
        for (int i = 0; i < D; i++) dx[t * D + i] += (real)(r * w[i] * dyr[i] - c * xr[i]);
    }
    if (!dw) return;
    for (int64_t t = 0; t < N; t++)
        for (int i = 0; i < D; i++) dw[i] += dy[t * D + i] * x[t * D + i] * rstd[t];
}

/* ---- parameter-free LayerNorm (OneBit post-LN) ---- */

#define NN_LN_EPS 1e-5 /* torch.nn.LayerNorm's default, as in src/formats/onebit.c */

void FN(nn_layernorm_forward)(real *y, real *rstd, const real *x, int64_t N, int64_t m) {
#pragma omp parallel for schedule(static) if (N * m >= 32768)
    for (int64_t t = 0; t < N; t++) {
        const real *xr = x + t * m;
        double mean = 0, var = 0;
        for (int64_t i = 0; i < m; i++) mean += xr[i];
        mean /= (double)m;
        for (int64_t i = 0; i < m; i++) var += ((double)xr[i] - mean) * ((double)xr[i] - mean);
        var /= (double)m;
        const double r = 1.0 / sqrt(var + NN_LN_EPS);
        rstd[t] = (real)r;
        for (int64_t i = 0; i < m; i++) y[t * m + i] = (real)(((double)xr[i] - mean) * r);
    }
}

/* dx = rstd·(dy − mean(dy) − y·mean(dy⊙y)) with y the normalised output. */
void FN(nn_layernorm_backward)(real *dx, const real *dy, const real *y, const real *rstd,
                               int64_t N, int64_t m) {
#pragma omp parallel for schedule(static) if (N * m >= 32768)
    for (int64_t t = 0; t < N; t++) {
        const real *dyr = dy + t * m, *yr = y + t * m;
        double s = 0, sy = 0;
        for (int64_t i = 0; i < m; i++) {
            s += dyr[i];
            sy += (double)dyr[i] * yr[i];
        }
        s /= (double)m;
        sy /= (double)m;
        const double r = rstd[t];
        for (int64_t i = 0; i < m; i++) dx[t * m + i] = (real)(r * (dyr[i] - s - yr[i] * sy));
    }
}

/* ---- RoPE ---- */

static void rope_rows(real *out, const real *in, int64_t N, int T, int n_heads, int hd,
                      const double *cs, const double *sn, bool interleaved, real sign) {
    const int half = hd / 2, width = n_heads * hd;
#pragma omp parallel for schedule(static) if (N * width >= 32768)
    for (int64_t t = 0; t < N; t++) {
        const int64_t p = t % T;
        const double *c = cs + p * half, *s = sn + p * half;
        for (int h = 0; h < n_heads; h++) {
            const real *vi = in + t * width + (int64_t)h * hd;
            real *vo = out + t * width + (int64_t)h * hd;
            for (int i = 0; i < half; i++) {
                const int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
                /* Same rounding as the inference path: cos/sin rounded to real first. */
                const real ci = (real)c[i], si = sign * (real)s[i];
                const real x0 = vi[a], x1 = vi[b];
                vo[a] = x0 * ci - x1 * si;
                vo[b] = x0 * si + x1 * ci;
            }
        }
    }
}

void FN(nn_rope_forward)(real *out, const real *in, int64_t N, int T, int n_heads, int hd,
                         const double *cs, const double *sn, bool interleaved) {
    rope_rows(out, in, N, T, n_heads, hd, cs, sn, interleaved, 1);
}

/* The rotation is orthogonal: its transpose is the rotation by the opposite angle. */
void FN(nn_rope_backward)(real *din, const real *dout, int64_t N, int T, int n_heads, int hd,
                          const double *cs, const double *sn, bool interleaved) {
    rope_rows(din, dout, N, T, n_heads, hd, cs, sn, interleaved, -1);
}

/* ---- causal attention with grouped-query heads ----
 * Queries go in blocks of NN_ATT_BLOCK rows; block [t0, t1) only meets keys [0, t1), so the
 * score and value products skip most of the masked upper triangle. Entries of P right of a
 * block's last key are never written or read. */

#define NN_ATT_BLOCK 64

void FN(nn_attention_forward)(real *out, real *P, const real *q, const real *k, const real *v,
                              int B, int T, int nh, int nkv, int hd) {
    const int64_t qd = (int64_t)nh * hd, kvd = (int64_t)nkv * hd, TT = (int64_t)T * T;
    const int group = nh / nkv;
    const real scale = (real)(1.0 / sqrt((double)hd));
    /* One (sequence, head) pair per iteration, each on one thread with single-threaded BLAS. */
#pragma omp parallel for schedule(static) if ((double)B * nh * TT * hd > 65536.0)
    for (int bh = 0; bh < B * nh; bh++) {
        const int b = bh / nh, h = bh % nh, kvh = h / group;
        const real *qb = q + (int64_t)b * T * qd + (int64_t)h * hd;
        const real *kb = k + (int64_t)b * T * kvd + (int64_t)kvh * hd;
        const real *vb = v + (int64_t)b * T * kvd + (int64_t)kvh * hd;
        real *Pb = P + (int64_t)bh * TT, *ob = out + (int64_t)b * T * qd + (int64_t)h * hd;
        for (int t0 = 0; t0 < T; t0 += NN_ATT_BLOCK) {
            const int t1 = t0 + NN_ATT_BLOCK < T ? t0 + NN_ATT_BLOCK : T;
            real *Pt = Pb + (int64_t)t0 * T;
            rgemm1(CblasNoTrans, CblasTrans, t1 - t0, t1, hd, scale, qb + (int64_t)t0 * qd, qd,
                   kb, kvd, 0, Pt, T);
            for (int t = t0; t < t1; t++) {
                real *row = Pb + (int64_t)t * T;
                real mx = row[0];
                for (int j = 1; j <= t; j++) mx = row[j] > mx ? row[j] : mx;
                double sum = 0;
                for (int j = 0; j <= t; j++) sum += (row[j] = rexp(row[j] - mx));
                const real inv = (real)(1.0 / sum);
                for (int j = 0; j <= t; j++) row[j] *= inv;
                for (int j = t + 1; j < t1; j++) row[j] = 0;
            }
            rgemm1(CblasNoTrans, CblasNoTrans, t1 - t0, hd, t1, 1, Pt, T, vb, kvd, 0,
                   ob + (int64_t)t0 * qd, qd);
        }
    }
}

/* Per query head and block: dP = dO·Vᵀ, dS = P⊙(dP − rowsum(dP⊙P)), dQ = dS·K·scale,
 * dK += dSᵀ·Q·scale, dV += Pᵀ·dO. The heads of one kv group run in order on one thread, so the
 * kv gradients are summed in a fixed order without atomics. */
void FN(nn_attention_backward)(real *dq, real *dk, real *dv, const real *dout, const real *P,
                               const real *q, const real *k, const real *v, int B, int T, int nh,
                               int nkv, int hd, real *work, int n_threads) {
    const int64_t qd = (int64_t)nh * hd, kvd = (int64_t)nkv * hd, TT = (int64_t)T * T;
    const int group = nh / nkv;
    const real scale = (real)(1.0 / sqrt((double)hd));
    const bool par = (double)B * nh * TT * hd > 65536.0 && n_threads > 1;
#pragma omp parallel for schedule(static) num_threads(n_threads) if (par)
    for (int bg = 0; bg < B * nkv; bg++) {
        const int b = bg / nkv, kvh = bg % nkv;
        real *dP = work + (int64_t)omp_get_thread_num() * TT;
        const real *kb = k + (int64_t)b * T * kvd + (int64_t)kvh * hd;
        const real *vb = v + (int64_t)b * T * kvd + (int64_t)kvh * hd;
        real *dkb = dk + (int64_t)b * T * kvd + (int64_t)kvh * hd;
        real *dvb = dv + (int64_t)b * T * kvd + (int64_t)kvh * hd;
        for (int t = 0; t < T; t++)
            for (int i = 0; i < hd; i++) dkb[(int64_t)t * kvd + i] = dvb[(int64_t)t * kvd + i] = 0;
        for (int h = kvh * group; h < (kvh + 1) * group; h++) {
            const int64_t off = (int64_t)b * T * qd + (int64_t)h * hd;
            const real *Pb = P + ((int64_t)b * nh + h) * TT;
            for (int t0 = 0; t0 < T; t0 += NN_ATT_BLOCK) {
                const int t1 = t0 + NN_ATT_BLOCK < T ? t0 + NN_ATT_BLOCK : T, n = t1 - t0;
                const real *Pt = Pb + (int64_t)t0 * T, *dot = dout + off + (int64_t)t0 * qd;
                rgemm1(CblasNoTrans, CblasTrans, n, t1, hd, 1, dot, qd, vb, kvd, 0, dP, t1);
                for (int t = t0; t < t1; t++) {
                    const real *pr = Pb + (int64_t)t * T;
                    real *dr = dP + (int64_t)(t - t0) * t1;
                    double dsum = 0;
                    for (int j = 0; j <= t; j++) dsum += (double)pr[j] * dr[j];
                    for (int j = 0; j <= t; j++) dr[j] = pr[j] * (dr[j] - (real)dsum);
                    for (int j = t + 1; j < t1; j++) dr[j] = 0;
                }
                rgemm1(CblasNoTrans, CblasNoTrans, n, hd, t1, scale, dP, t1, kb, kvd, 0,
                       dq + off + (int64_t)t0 * qd, qd);
                rgemm1(CblasTrans, CblasNoTrans, t1, hd, n, scale, dP, t1,
                       q + off + (int64_t)t0 * qd, qd, 1, dkb, kvd);
                rgemm1(CblasTrans, CblasNoTrans, t1, hd, n, 1, Pt, T, dot, qd, 1, dvb, kvd);
            }
        }
    }
}

/* ---- SwiGLU: h = silu(gate)·up ---- */

void FN(nn_swiglu_forward)(real *h, const real *gate, const real *up, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= 65536)
    for (int64_t i = 0; i < n; i++) {
        const real g = gate[i];
        h[i] = g / (1 + rexp(-g)) * up[i];
    }
}

/* silu'(g) = σ(g)·(1 + g·(1 − σ(g))) */
void FN(nn_swiglu_backward)(real *dgate, real *dup, const real *dh, const real *gate,
                            const real *up, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= 65536)
    for (int64_t i = 0; i < n; i++) {
        const real g = gate[i], s = 1 / (1 + rexp(-g));
        dup[i] = dh[i] * g * s;
        dgate[i] = dh[i] * up[i] * s * (1 + g * (1 - s));
    }
}

/* ---- bias ---- */

void FN(nn_bias_forward)(real *y, const real *bias, int64_t N, int64_t n) {
    for (int64_t t = 0; t < N; t++)
        for (int64_t j = 0; j < n; j++) y[t * n + j] += bias[j];
}

void FN(nn_bias_backward)(real *dbias, const real *dy, int64_t N, int64_t n) {
    colsum_acc(dbias, dy, NULL, N, n);
}
