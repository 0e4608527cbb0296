/* Distillation and language-modelling losses with their gradients (ALGORITHMS.md §3), compiled
 * once per precision. Rows are processed in parallel; each row's loss goes to row[t] and the
 * rows are summed in order, so the total does not depend on the thread count. */

/* log Σ_c exp(z_c), in double */
static double row_lse(const real *z, int V) {
    real mx = z[0];
    for (int c = 1; c < V; c++) mx = z[c] > mx ? z[c] : mx;
    double s = 0;
    for (int c = 0; c < V; c++) s += exp((double)z[c] - mx);
    return mx + log(s);
}

static double sum_rows(const double *row, int64_t N) {
    double s = 0;
    for (int64_t t = 0; t < N; t++) s += row[t];
    return s;
}

void FN(nn_softmax_rows)(real *p, const real *logits, int64_t N, int V) {
#pragma omp parallel for schedule(static) if (N * V >= 32768)
    for (int64_t t = 0; t < N; t++) {
        const double lse = row_lse(logits + t * V, V);
        for (int c = 0; c < V; c++) p[t * V + c] = (real)exp((double)logits[t * V + c] - lse);
    }
}

/* loss_t = −Σ_c pt_c·(z_c − lse) = lse·Σ pt − Σ pt·z;  ∂/∂z_c = (Σ pt)·softmax_c − pt_c */
double FN(nn_soft_ce)(const real *logits, const real *pt, int64_t N, int V, double scale,
                      real *dlogits, double *row) {
#pragma omp parallel for schedule(static) if (N * V >= 32768)
    for (int64_t t = 0; t < N; t++) {
        const real *z = logits + t * V, *p = pt + t * V;
        const double lse = row_lse(z, V);
        double sp = 0, spz = 0;
        for (int c = 0; c < V; c++) {
            sp += p[c];
            spz += (double)p[c] * z[c];
        }
        row[t] = lse * sp - spz;
        if (dlogits) {
            real *d = dlogits + t * V;
            const double k = scale / (double)N;
            for (int c = 0; c < V; c++)
                d[c] = (real)(k * (sp * exp((double)z[c] - lse) - p[c]));
        }
    }
    return sum_rows(row, N) / (double)N;
}

double FN(nn_hard_ce)(const real *logits, const int32_t *target, int64_t N, int V, double scale,
                      real *dlogits, double *row) {
#pragma omp parallel for schedule(static) if (N * V >= 32768)
    for (int64_t t = 0; t < N; t++) {
        const real *z = logits + t * V;
        const double lse = row_lse(z, V);
        const int y = target[t];
        row[t] = lse - z[y];
        if (dlogits) {
            real *d = dlogits + t * V;
            const double k = scale / (double)N;
            for (int c = 0; c < V; c++) d[c] = (real)(k * (exp((double)z[c] - lse) - (c == y)));
        }
    }
    return sum_rows(row, N) / (double)N;
}

/* ‖h‖ clamped at 1e-12 like torch.nn.functional.normalize */
static double row_norm(const real *h, int D) {
    double s = 0;
    for (int i = 0; i < D; i++) s += (double)h[i] * h[i];
    s = sqrt(s);
    return s > 1e-12 ? s : 1e-12;
}

void FN(nn_l2_normalize_rows)(real *out, const real *h, int64_t N, int D) {
#pragma omp parallel for schedule(static) if (N * D >= 32768)
    for (int64_t t = 0; t < N; t++) {
        const double inv = 1.0 / row_norm(h + t * D, D);
        for (int i = 0; i < D; i++) out[t * D + i] = (real)(h[t * D + i] * inv);
    }
}

/* With n = h/‖h‖ and e = n − nt: loss_t = ‖e‖², ∂/∂n = 2e/N, ∂/∂h = (∂n − n·(n·∂n))/‖h‖. */
double FN(nn_hidden_mse)(const real *h, const real *nt, int64_t N, int D, double scale,
                         real *dh, double *row) {
#pragma omp parallel for schedule(static) if (N * D >= 32768)
    for (int64_t t = 0; t < N; t++) {
        const real *hr = h + t * D, *nr = nt + t * D;
        const double norm = row_norm(hr, D), inv = 1.0 / norm;
        double loss = 0, ndn = 0;
        for (int i = 0; i < D; i++) {
            const double e = hr[i] * inv - nr[i];
            loss += e * e;
            ndn += hr[i] * inv * e; /* n·e */
        }
        row[t] = loss;
        if (dh) {
            const double k = 2.0 * scale / (double)N;
            for (int i = 0; i < D; i++) {
                const double n = hr[i] * inv, e = n - nr[i];
                dh[t * D + i] = (real)(k * (e - n * ndn) * inv);
            }
        }
    }
    return sum_rows(row, N) / (double)N;
}
