/* bitllm quantize: post-training quantization of every decoder projection with one method. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bitllm/dist.h"
#include "bitllm/quantize.h"
#include "bitllm/train.h"
#include "cli.h"
#include "cli_calib.h"
#include "cli_util.h"
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    bool json;
    int done, total;
    double t0;
    cJSON *layers;
    cJSON *alloc; /* the allocation table (--allocate) */
    cli_progress prog;
} layer_log;

static void on_alloc(void *ctx, const bl_alloc_entry *e) {
    layer_log *lg = ctx;
    if (cJSON_GetArraySize(lg->alloc) == 0) {
        cli_progress_done(&lg->prog);
        fprintf(stderr, "bit allocation: %.0f bits for %.0f allowed (the uniform run's)\n"
                        "%-36s %13s %8s %8s %8s %8s %10s\n",
                e->allocated_bits, e->budget_bits, "projection", "shape", "mid uni", "mid",
                "bpw uni", "bpw", "sensitiv.");
    }
    char shape[32];
    snprintf(shape, sizeof shape, "%lld x %lld", (long long)e->m, (long long)e->n);
    fprintf(stderr, "%-36s %13s %8lld %8lld %8.4f %8.4f %10.3g\n", e->name, shape,
            (long long)e->mid_uniform, (long long)e->mid, e->bpw_uniform, e->bpw, e->sensitivity);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "name", e->name);
    cJSON *sh = cJSON_AddArrayToObject(j, "shape");
    cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)e->m));
    cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)e->n));
    cJSON_AddNumberToObject(j, "mid_uniform", (double)e->mid_uniform);
    cJSON_AddNumberToObject(j, "mid", (double)e->mid);
    cJSON_AddNumberToObject(j, "bpw_uniform", e->bpw_uniform);
    cJSON_AddNumberToObject(j, "bpw", e->bpw);
    cJSON_AddNumberToObject(j, "sensitivity", e->sensitivity);
    cJSON_AddItemToArray(lg->alloc, j);
}

static void on_layer(void *ctx, const char *name, int64_t m, int64_t n,
                     const bl_layer_fit_result *r) {
    layer_log *lg = ctx;
    lg->done++;
    double el = bl_time_s() - lg->t0, eta = el / lg->done * (lg->total - lg->done);
    char rs[32] = "-", ws[48] = "", it[24] = "", md[32] = ""; /* NaN: --random-factors */
    if (r->mid > 0) snprintf(md, sizeof md, "  mid %lld", (long long)r->mid);
    if (!isnan(r->rel_err)) snprintf(rs, sizeof rs, "%.4f", r->rel_err);
    if (!isnan(r->wrel_err) && r->wrel_err != r->rel_err)
        snprintf(ws, sizeof ws, "  weighted %.4f", r->wrel_err);
    if (r->iters > 0) snprintf(it, sizeof it, "  %d it", r->iters);
    fprintf(stderr, "[%3d/%d] %-36s %6lld x %-6lld%s bpw %.4f  rel_err %-6s%s%s  %.1fs  (ETA "
                    "%dm%02ds)\n",
            lg->done, lg->total, name, (long long)m, (long long)n, md, r->bpw, rs, ws, it,
            r->seconds, (int)eta / 60, (int)eta % 60);
    cJSON *e = cli_layer_fit_json(r);
    cJSON_AddStringToObject(e, "name", name);
    cJSON *sh = cJSON_AddArrayToObject(e, "shape");
    cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)m));
    cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)n));
    cJSON_AddItemToArray(lg->layers, e);
}

int cmd_quantize(int argc, char **argv) {
    bl_quant_opts o;
    bl_quant_opts_default(&o);
    char default_method[64], method_help[192];
    bl_method_name(&o.method, default_method, sizeof default_method); /* the library's default */
    snprintf(method_help, sizeof method_help, "format[:key=value,...] or an alias; `bitllm "
             "formats` lists the formats, their keys and aliases (default %s)", default_method);
    const char *out = NULL, *method = default_method, *bpw_s = NULL, *tokp = NULL, *metric = NULL,
               *embed = NULL, *head = NULL;
    bool json = false, nmf = false, svd = false, aa = false, rnd = false, force = false,
         allocate = false;
    int rank_l = 1, paths = 1, iters = 0, max_iters = 0, group = 128, adam = 0, threads = 0;
    cli_calib_flags cf;
    cli_calib_defaults(&cf);
    double tol = 0.0;
    uint64_t seed = 0, given = 0;
    char bpw_help[160];
    snprintf(bpw_help, sizeof bpw_help, "target bpw incl. FP16 vectors (sets the middle "
             "dimension), or '%s' = %s's per layer (default)", bl_bpw_keyword(), bl_bpw_keyword());
    const cli_opt opts[] = {
        {"out", 'o', OPT_STR, &out, "OUTDIR",
         "output directory, a loadable model (written beside it, then moved into place; an "
         "existing one must be a bitllm output)", CLI_ANY},
        {"force", 0, OPT_FLAG, &force, NULL,
         "replace OUTDIR even if it is not a bitllm output (never an input)", CLI_ANY},
        {"method", 'm', OPT_STR, &method, "M",
         method_help, CLI_ANY},
        {"bpw", 0, OPT_STR, &bpw_s, "B", bpw_help, USES(BL_QP_BPW)},
        {"allocate", 0, OPT_FLAG, &allocate, NULL,
         "choose each projection's middle dimension (from its error-vs-bits curve and output "
         "sensitivity) under the total bits of the uniform run at --bpw; prints the table",
         USES(BL_QP_BPW)},
        {"nmf", 0, OPT_FLAG, &nmf, NULL, "SVID rank-1 by NMF (default)", USES(BL_QP_SVID)},
        {"svd", 0, OPT_FLAG, &svd, NULL, "SVID rank-1 by SVD power iteration",
         USES(BL_QP_SVID)},
        {"envelope-rank", 0, OPT_INT, &rank_l, "L", "envelope rank l (default 1)",
         CLI_RANGE(1, 1024), USES(BL_QP_ENVELOPE_RANK)},
        {"paths", 0, OPT_INT, &paths, "P", "paths P (default 1)", CLI_RANGE(1, 64),
         USES(BL_QP_PATHS)},
        {"fit-metric", 0, OPT_STR, &metric, "hessian|diag",
         "with calibration data: fit for the output error under H = XᵀX/N of each projection's "
         "inputs (hessian, default) or with the per-channel mean x² only (diag)",
         USES(BL_QP_ACTIVATION_AWARE)},
        {"activation-aware", 0, OPT_FLAG, &aa, NULL, "the same as --fit-metric hessian",
         USES(BL_QP_ACTIVATION_AWARE)},
        {"adam-steps", 0, OPT_INT, &adam, "N", "Adam steps on the envelopes, signs frozen",
         CLI_MIN(1), USES(BL_QP_ADAM_STEPS)},
        {"group", 0, OPT_INT, &group, "G", "group size, 64..128 (default: the method's)",
         CLI_RANGE(64, 128), USES(BL_QP_GROUP)},
        CLI_CALIB_OPTS(cf),
        {"iters", 0, OPT_INT, &iters, "N", "exactly N ADMM iterations (default: stop "
                                           "on convergence, docs/fits.md)",
         CLI_MIN(1), USES(BL_QP_ITERS)},
        {"max-iters", 0, OPT_INT, &max_iters, "N", "cap of the convergence stop "
                                                   "(default 260)",
         CLI_RANGE(1, 1000000), USES(BL_QP_ITERS)},
        {"tol", 0, OPT_FLOAT, &tol, "T", "stop when the objective improves by less "
                                         "than T (relative) over 10 iterations (default 1e-3)",
         CLI_RANGE_LO_OPEN(0.0, 1.0), USES(BL_QP_ITERS)},
        {"seed", 0, OPT_U64, &seed, "S", "random seed of the fit, --random-factors, "
         "--calib-generate and block reconstruction (default 0)", CLI_ANY},
        {"random-factors", 0, OPT_FLAG, &rnd, NULL,
         "skip fitting: random signs and scales of the same shapes and bpw (speed/memory "
         "benchmarks of synthetic models only)", CLI_ANY},
        {"threads", 't', OPT_INT, &threads, "T",
         "threads (default: OMP_NUM_THREADS or all cores; the result does not depend on it)",
         CLI_THREADS},
        {"tokenizer", 0, OPT_STR, &tokp, "FILE", "tokenizer for llama2.c checkpoints", CLI_ANY},
        {"embed", 0, OPT_STR, &embed, "SPEC",
         "store the token embeddings as q8_0, q4_0 (or any qsym spec) or f16 (default: as they "
         "are)", CLI_ANY},
        {"head", 0, OPT_STR, &head, "SPEC",
         "store the output head as q8_0, q4_0, f16 or a 1-bit format (onebit, dbf, ...; "
         "default: as it is)", CLI_ANY},
        {"json", 0, OPT_FLAG, &json, NULL, "print a JSON report on stdout", CLI_ANY},
    };
    const cli_spec spec = {"quantize", "MODEL",
                           "Quantize the q,k,v,o,gate,up,down projections of every layer; "
                           "embeddings and output head are kept unless --embed / --head say "
                           "otherwise, norms are kept. The output directory "
                           "loads like any model. An option the method does not use is an error.",
                           opts, (int)(sizeof opts / sizeof opts[0]), 1, 1, &given};
    const char *pos[1];
    int np, r = cli_parse(&spec, argc, argv, pos, &np);
    if (r != CLI_OK) return cli_exit_code(r);
    if (!out) return cli_errorf("quantize", "missing -o OUTDIR");
    if (cli_method("quantize", &spec, method, rnd, &o.method)) return 2;
    bl_err perr;
    if (bpw_s && bl_bpw_parse(bpw_s, 16.0, &o.bpw, &perr)) return cli_error("quantize", &perr), 2;
    if (nmf && svd) {
        cli_errorf("quantize", "--nmf and --svd are exclusive");
        return 2;
    }
    if (group != 64 && group != 128) {
        cli_errorf("quantize", "--group must be 64 or 128, got %d", group);
        return 2;
    }
    o.fit.nmf = !svd;
    o.fit.seed = seed;
    o.fit.iters = iters;
    o.fit.max_iters = max_iters;
    o.fit.tol = tol;
    o.fit.adam_steps = adam;
    if (metric && strcmp(metric, "hessian") != 0 && strcmp(metric, "diag") != 0) {
        cli_errorf("quantize", "--fit-metric must be 'hessian' or 'diag', got '%s'", metric);
        return 2;
    }
    if ((metric || aa) && !cf.calib && cf.calib_generate <= 0) {
        cli_errorf("quantize", "--%s needs calibration data (--calib or --calib-generate)",
                   metric ? "fit-metric" : "activation-aware");
        return 2;
    }
    if (metric && aa && strcmp(metric, "diag") == 0) {
        cli_errorf("quantize", "--activation-aware and --fit-metric diag contradict each other");
        return 2;
    }
    o.activation_aware = !(metric && strcmp(metric, "diag") == 0);
    o.random_factors = rnd;
    o.allocate = allocate;
    o.n_threads = threads;
    o.embed = embed;
    o.head = head;
    if (allocate && rnd) {
        cli_errorf("quantize", "--allocate fits every matrix at several sizes: it has no effect "
                               "with --random-factors");
        return 2;
    }

    /* The output is checked and its temporary directory created before anything is fitted. With
     * block reconstruction the target keeps the state of finished blocks in TARGET/checkpoint
     * (a killed run resumes from it), so it is prepared live. */
    const bool maybe_recon = (cf.calib || cf.calib_generate > 0) && bl_recon_supports(&o.method) &&
                             !(cf.reconstruct && strcmp(cf.reconstruct, "none") == 0);
    const char *inputs[] = {pos[0], tokp, cf.calib};
    const bool root = bl_dist_rank() == 0; /* under mpirun only rank 0 writes (distributed.md) */
    bl_outdir *od = root ? cli_outdir_prepare("quantize", out, inputs, 3, force, maybe_recon)
                         : NULL;
    if (root && !od) return 1;
    if (rnd && (cf.calib || cf.calib_generate > 0)) {
        cli_errorf("quantize", "--%s: random factors never read the weights, calibration makes "
                   "no sense with --random-factors", cf.calib ? "calib" : "calib-generate");
        bl_outdir_abort(od);
        return 2;
    }
    if (cli_given(&spec, "seed") && !bl_method_uses(&o.method, rnd, BL_QP_SEED) &&
        !maybe_recon && cf.calib_generate <= 0) {
        char users[96];
        bl_qparam_users(BL_QP_SEED, rnd, users, sizeof users);
        cli_errorf("quantize", "--seed is not used by -m %s without calibration data (used by: "
                   "%s, --calib-generate and block reconstruction)", method, users);
        bl_outdir_abort(od);
        return 2;
    }
    bl_model *m = cli_load_model(pos[0], tokp);
    if (!m) {
        bl_outdir_abort(od);
        return 1;
    }
    int rc = 1;
    bl_calib_data cd = {0};
    char state[4200] = "";
    cJSON *blocks = cJSON_CreateArray();
    cJSON *alloc_tbl = cJSON_CreateArray(); /* freed at the end unless moved into the report */
    {
        const int r2 = cli_calib_apply("quantize", &spec, &cf, m, &o.method, 1, &cd, &o);
        if (r2) {
            rc = r2;
            goto done;
        }
    }
    o.recon.ctx = blocks;
    if (!root && o.recon.block) { /* every rank reconstructs every block: rank 0 alone reports */
        o.recon.on_block = NULL;
        o.recon.on_progress = NULL;
    }
    if (o.recon.block && od) {
        snprintf(state, sizeof state, "%s/checkpoint", bl_outdir_target(od));
        o.recon.state_dir = state;
    }
    if (o.calib_ids && ((!o.recon.block && o.grad_importance) || allocate) &&
        bl_method_uses(&o.method, false, BL_QP_CALIB))
        fprintf(stderr, "collecting output-gradient statistics on %zu tokens%s\n", o.n_calib,
                o.grad_importance ? "" : " (the allocation's sensitivities only)");
    char cmdline[1024] = "bitllm";
    for (int i = 0; i < argc; i++) {
        size_t k = strlen(cmdline);
        snprintf(cmdline + k, sizeof cmdline - k, " %s", argv[i]);
    }
    o.provenance = cmdline;
    layer_log lg = {.json = json, .total = m->cfg.n_layers * BL_PROJ_COUNT, .t0 = bl_time_s(),
                    .layers = cJSON_CreateArray(), .alloc = alloc_tbl};
    o.on_layer = root || !o.recon.block ? on_layer : NULL;
    o.on_layer_ctx = &lg;
    if (allocate) {
        cli_progress_start(&lg.prog, "bit allocation (curve fits)");
        o.progress = cli_progress_cb;
        o.progress_ctx = &lg.prog;
        o.on_alloc = on_alloc;
        o.on_alloc_ctx = &lg;
    }
    fprintf(stderr, "quantizing %s with %s%s into %s\n", pos[0], method,
            rnd ? " (random factors: benchmark only, not a usable model)"
                : o.recon.block ? " (block reconstruction)"
                : o.calib_ids ? " (calibrated)" : "",
            out);
    bl_err err = {0};
    bl_quant_summary sum;
    if (bl_quantize_model(m, &o, od ? bl_outdir_path(od) : NULL, &sum, &err) != BL_OK) {
        cli_error("quantize", &err);
        cJSON_Delete(lg.layers);
        goto done;
    }
    if (bl_dist_size() > 1) { /* what each rank did (bench/mpi_bench.sh reads these lines) */
        const bl_dist_stats ds = bl_dist_get_stats();
        fprintf(stderr, "rank %d of %d: %.2fs, sent %llu bytes, received %llu bytes, waited "
                        "%.2fs on the other ranks\n",
                bl_dist_rank(), bl_dist_size(), bl_time_s() - lg.t0,
                (unsigned long long)ds.bytes_sent, (unsigned long long)ds.bytes_received,
                ds.comm_seconds);
    }
    if (!root) {
        cJSON_Delete(lg.layers);
        rc = 0;
        goto done;
    }
    if (*state) { /* the reconstruction state is spent: nothing to carry into the output */
        bl_remove_stale_tmp(state, NULL);
        rmdir(state);
    }
    bl_status cs = bl_outdir_commit(od, &err);
    od = NULL;
    if (cs) {
        cli_error("quantize", &err);
        cJSON_Delete(lg.layers);
        goto done;
    }
    fprintf(stderr, "done in %.1fs: %.4f bpw in the quantized layers, %.4f bpw over the whole "
                    "model (%.2f MiB of tensors)\n",
            sum.seconds, sum.bpw_layers, sum.bpw_model, sum.bytes / 1048576.0);
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "method", method);
        cJSON_AddStringToObject(j, "model", pos[0]);
        cJSON_AddStringToObject(j, "out", out);
        cJSON_AddNumberToObject(j, "bpw_layers", sum.bpw_layers);
        cJSON_AddNumberToObject(j, "bpw_model", sum.bpw_model);
        cJSON_AddNumberToObject(j, "bytes", (double)sum.bytes);
        cJSON_AddNumberToObject(j, "seconds", sum.seconds);
        bl_json_add_u64(j, "seed", seed); /* 64 bits: a string, exact */
        if (rnd) cJSON_AddBoolToObject(j, "random_factors", true);
        cli_calib_json(j, &o, &cd);
        if (o.recon.block) {
            cJSON_AddItemToObject(j, "blocks", blocks);
            blocks = NULL;
            cJSON_AddNumberToObject(j, "blocks_resumed", sum.blocks_resumed);
            cJSON_AddBoolToObject(j, "spilled", sum.spilled);
        }
        if (o.recon.calibrate_scales) {
            cJSON_AddNumberToObject(j, "kl_before", sum.kl_before);
            cJSON_AddNumberToObject(j, "kl_after", sum.kl_after);
        }
        cJSON_AddItemToObject(j, "layers", lg.layers);
        if (allocate) {
            cJSON_AddItemToObject(j, "allocation", alloc_tbl);
            alloc_tbl = NULL;
        }
        cli_print_json(j);
    } else {
        cJSON_Delete(lg.layers);
    }
    rc = 0;
done:
    cJSON_Delete(alloc_tbl);
    bl_outdir_abort(od);
    cJSON_Delete(blocks);
    bl_calib_data_free(&cd);
    bl_model_free(m);
    return rc;
}
