/* Declarations of one precision instantiation of the training engine. Included twice by nn.h,
 * with NN_REAL = float / FN(x) = x##_f32 and NN_REAL = double / FN(x) = x##_f64 (no include
 * guard on purpose). Shapes: N = rows (tokens of a batch, B·T), row-major.
 *
 * Conventions of every _backward: gradients of inputs named d<in> are ACCUMULATED (+=) unless
 * the comment says "overwrites"; parameter gradients are accumulated into the gradient buffer,
 * so micro-batches add up. */

/* ---- elementary layers (layers_impl.h) ---- */

/* x (N×D) = E[tok] */
void FN(nn_embedding_forward)(NN_REAL *x, const int32_t *tok, int64_t N, const NN_REAL *E, int D);
/* dE[tok] += dx, in token order. */
void FN(nn_embedding_backward)(NN_REAL *dE, const int32_t *tok, int64_t N, const NN_REAL *dx,
                               int D);

/* y = x · rstd · w per row, rstd = 1/sqrt(mean(x²) + eps) (stored, N). y may equal x. */
void FN(nn_rmsnorm_forward)(NN_REAL *y, NN_REAL *rstd, const NN_REAL *x, const NN_REAL *w,
                            int64_t N, int D, double eps);
/* dx += ∂/∂x, dw += ∂/∂w (dw may be NULL). */
void FN(nn_rmsnorm_backward)(NN_REAL *dx, NN_REAL *dw, const NN_REAL *dy, const NN_REAL *x,
                             const NN_REAL *w, const NN_REAL *rstd, int64_t N, int D);

/* Parameter-free LayerNorm over each row of m values (eps 1e-5, biased variance), the OneBit
 * post-LN: y = (x − mean)·rstd. y may equal x. */
void FN(nn_layernorm_forward)(NN_REAL *y, NN_REAL *rstd, const NN_REAL *x, int64_t N,
                              int64_t m);
/* dx (overwrites; may equal dy) from dy, the normalised output y and rstd. */
void FN(nn_layernorm_backward)(NN_REAL *dx, const NN_REAL *dy, const NN_REAL *y,
                               const NN_REAL *rstd, int64_t N, int64_t m);

/* RoPE on rows of n_heads·hd values; row i is at position i % T. cs/sn: [T][hd/2] tables.
 * interleaved: pairs (2i, 2i+1), else rotate-half pairs (i, i + hd/2). out may equal in. */
void FN(nn_rope_forward)(NN_REAL *out, const NN_REAL *in, int64_t N, int T, int n_heads, int hd,
                         const double *cs, const double *sn, bool interleaved);
/* din (overwrites; may equal dout): the inverse rotation. */
void FN(nn_rope_backward)(NN_REAL *din, const NN_REAL *dout, int64_t N, int T, int n_heads,
                          int hd, const double *cs, const double *sn, bool interleaved);

/* Causal attention with grouped-query heads over B sequences of T tokens. q: N×(nh·hd),
 * k, v: N×(nkv·hd), out: N×(nh·hd), P: [B][nh][T][T] softmax probabilities (stored). */
void FN(nn_attention_forward)(NN_REAL *out, NN_REAL *P, const NN_REAL *q, const NN_REAL *k,
                              const NN_REAL *v, int B, int T, int nh, int nkv, int hd);
/* dq, dk, dv overwritten. work: n_threads·T·T reals (n_threads: at most that many threads). */
void FN(nn_attention_backward)(NN_REAL *dq, NN_REAL *dk, NN_REAL *dv, const NN_REAL *dout,
                               const NN_REAL *P, const NN_REAL *q, const NN_REAL *k,
                               const NN_REAL *v, int B, int T, int nh, int nkv, int hd,
                               NN_REAL *work, int n_threads);

/* h = silu(gate) ⊙ up over n values; dgate, dup overwritten. */
void FN(nn_swiglu_forward)(NN_REAL *h, const NN_REAL *gate, const NN_REAL *up, int64_t n);
void FN(nn_swiglu_backward)(NN_REAL *dgate, NN_REAL *dup, const NN_REAL *dh,
                            const NN_REAL *gate, const NN_REAL *up, int64_t n);

/* y (N×n) += bias; dbias += column sums of dy (token order). */
void FN(nn_bias_forward)(NN_REAL *y, const NN_REAL *bias, int64_t N, int64_t n);
void FN(nn_bias_backward)(NN_REAL *dbias, const NN_REAL *dy, int64_t N, int64_t n);

/* ---- linear layers (linear_impl.h and each format's linear_<name>.h) ---- */

/* What a linear layer keeps for its backward pass: up to three buffers, pointed by its format's
 * bind into the layer's activations (each format's file says what they hold). */
typedef struct {
    NN_REAL *z, *y, *r;
} FN(nn_lin_acts);

/* A trainable format's math in this precision (its linear_<name>.h), reached through its nn_format
 * entry (math_f32 / math_f64): bind points A at its activations in mem, forward and backward as
 * nn_linear_forward / nn_linear_backward below. */
typedef struct {
    void (*bind)(FN(nn_lin_acts) *A, const nn_linear *L, int64_t N, NN_REAL *mem);
    void (*forward)(const nn_linear *L, const NN_REAL *P, const NN_REAL *x, int64_t N,
                    NN_REAL *y, FN(nn_lin_acts) *A, NN_REAL *work);
    void (*backward)(const nn_linear *L, const NN_REAL *P, NN_REAL *G, const NN_REAL *x,
                     const NN_REAL *dy, int64_t N, NN_REAL *dx, FN(nn_lin_acts) *A,
                     NN_REAL *work);
} FN(nn_lin_math);

/* Points A at nn_linear_acts_size(L, N) reals starting at mem. */
void FN(nn_lin_acts_bind)(FN(nn_lin_acts) *A, const nn_linear *L, int64_t N, NN_REAL *mem);
/* y (N×m, overwrites) = layer(x). work: nn_linear_work_size reals. */
void FN(nn_linear_forward)(const nn_linear *L, const NN_REAL *P, const NN_REAL *x, int64_t N,
                           NN_REAL *y, FN(nn_lin_acts) *A, NN_REAL *work);
/* dx += ∂/∂x (dx may be NULL); parameter gradients into G (NULL: none) as allowed by
 * L->grad_w / L->grad_vec and the sign latents. Onebit latent: the gradient with respect to
 * sign(w) times the straight-through factor 1.001 − tanh(w)². */
void FN(nn_linear_backward)(const nn_linear *L, const NN_REAL *P, NN_REAL *G, const NN_REAL *x,
                            const NN_REAL *dy, int64_t N, NN_REAL *dx, FN(nn_lin_acts) *A,
                            NN_REAL *work);
/* Onebit: packs sign(latent) into the layer's sign matrix (call after every parameter update). */
bl_status FN(nn_linear_sync_signs)(nn_linear *L, const NN_REAL *P, bl_err *err);

/* ---- the whole decoder (model_impl.h) ---- */

typedef struct {
    int B, T, n_threads, n_layers;
    int64_t N;                /* B·T */
    NN_REAL *mem;             /* the one allocation */
    /* forward, kept for backward ([L] = one slab per layer) */
    NN_REAL *x;               /* [L+1][N][D] residual stream; x[l+1] = output of layer l */
    NN_REAL *xn1, *rstd1;     /* [L][N][D], [L][N] attention RMSNorm */
    NN_REAL *qlin, *klin;     /* [L][N][qd|kvd] after projection and bias, before q/k norm */
    NN_REAL *rstdq, *rstdk;   /* [L][N·nh|N·nkv] q/k norm (Qwen3) */
    NN_REAL *q, *k, *v;       /* [L][N][qd|kvd|kvd] attention inputs (after norm and RoPE) */
    NN_REAL *P;               /* [L][B][nh][T][T] attention probabilities */
    NN_REAL *ao;              /* [L][N][qd] attention output */
    NN_REAL *xmid;            /* [L][N][D] residual after attention */
    NN_REAL *xn2, *rstd2;     /* [L][N][D], [L][N] MLP RMSNorm */
    NN_REAL *gate, *up, *hmid; /* [L][N][H] */
    FN(nn_lin_acts) *lin;     /* [L][BL_PROJ_COUNT] */
    NN_REAL *xf, *rstdf;      /* [N][D], [N] final RMSNorm */
    NN_REAL *logits;          /* [N][V]; the loss may overwrite it with dlogits */
    NN_REAL *dhid;            /* [L][N][D] gradients injected after each layer (hidden loss) */
    /* backward scratch */
    NN_REAL *dx, *dxn, *dq, *dk, *dv, *dtmp, *dao, *dgate, *dup, *dhmid, *attw, *work;
    double *row;              /* [N] per-row loss terms, summed in row order */
    /* optional gradient statistics: Σ_t (∂ℓ/∂y_t,r)² per projection output, [L·7] arrays of m */
    double **dy_sumsq;
} FN(nn_acts);

bl_status FN(nn_acts_new)(const nn_model *M, int B, int T, FN(nn_acts) **out, bl_err *err);
void FN(nn_acts_free)(FN(nn_acts) *A);
/* tok: B·T ids, each sequence at positions 0..T−1. Fills the activations and A->logits. */
void FN(nn_forward)(const nn_model *M, const NN_REAL *P, FN(nn_acts) *A, const int32_t *tok);
/* Back-propagates dlogits (N×V; may be A->logits) and, when dhid is non-NULL, dhid[l] (N×D)
 * added to the gradient of layer l's output. Parameter gradients accumulate into G. */
void FN(nn_backward)(const nn_model *M, const NN_REAL *P, NN_REAL *G, FN(nn_acts) *A,
                     const int32_t *tok, const NN_REAL *dlogits, const NN_REAL *dhid);
/* One decoder layer l alone (block-wise reconstruction): the forward reads A->x[l] and writes
 * A->x[l+1] with the activations its backward needs; the backward takes the gradient of the
 * layer's output in A->dx, accumulates the parameter gradients into G and leaves the gradient of
 * the layer's input in A->dx. nn_forward / nn_backward are these over all layers. */
void FN(nn_layer_forward)(const nn_model *M, const NN_REAL *P, FN(nn_acts) *A, int l);
void FN(nn_layer_backward)(const nn_model *M, const NN_REAL *P, NN_REAL *G, FN(nn_acts) *A,
                           int l);
/* Onebit layers: sign matrices from the current latents. */
bl_status FN(nn_model_sync_signs)(nn_model *M, const NN_REAL *P, bl_err *err);

/* ---- losses (loss_impl.h); N rows of V classes, mean over rows ---- */

/* p = softmax(logits) per row (p may equal logits). */
void FN(nn_softmax_rows)(NN_REAL *p, const NN_REAL *logits, int64_t N, int V);
/* Soft cross-entropy −(1/N) Σ_t Σ_c pt log softmax(logits); dlogits = scale·∂/∂logits
 * (may equal logits; NULL: loss only). row: N doubles of scratch. */
double FN(nn_soft_ce)(const NN_REAL *logits, const NN_REAL *pt, int64_t N, int V, double scale,
                      NN_REAL *dlogits, double *row);
/* Hard-label cross-entropy −(1/N) Σ_t log softmax(logits)[target]; same conventions. */
double FN(nn_hard_ce)(const NN_REAL *logits, const int32_t *target, int64_t N, int V,
                      double scale, NN_REAL *dlogits, double *row);
/* out = rows of h divided by their L2 norms (out may equal h). */
void FN(nn_l2_normalize_rows)(NN_REAL *out, const NN_REAL *h, int64_t N, int D);
/* (1/N) Σ_t ‖h_t/‖h_t‖ − nt_t‖² against normalised teacher rows nt; dh (overwrites, may be NULL)
 * = scale·∂/∂h. */
double FN(nn_hidden_mse)(const NN_REAL *h, const NN_REAL *nt, int64_t N, int D, double scale,
                         NN_REAL *dh, double *row);
