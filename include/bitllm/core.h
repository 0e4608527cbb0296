/* Core utilities shared by every part of libbitllm: status codes with messages, half-precision
 * conversion, a deterministic random generator, small allocation helpers.
 *
 * Error convention: every fallible function returns a bl_status and, on failure, fills the
 * caller's bl_err with a message that names the file/object and the problem. The library never
 * prints and never exits. */
#ifndef BITLLM_CORE_H
#define BITLLM_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#define BITLLM_VERSION "0.1.0"

/* The public API: declarations between BL_API_BEGIN and BL_API_END (every header under
 * include/bitllm/) are exported from the shared library, which is built with
 * -fvisibility=hidden; everything declared elsewhere (the private headers under src/) stays
 * internal. */
#define BL_API_BEGIN _Pragma("GCC visibility push(default)")
#define BL_API_END _Pragma("GCC visibility pop")

BL_API_BEGIN

typedef enum {
    BL_OK = 0,
    BL_ERR_IO,          /* open/read/write/mmap failed */
    BL_ERR_FORMAT,      /* malformed or truncated file contents */
    BL_ERR_UNSUPPORTED, /* valid input we do not handle (dtype, architecture, version) */
    BL_ERR_ARG,         /* bad argument from the caller */
    BL_ERR_NOMEM,
    BL_ERR_NUMERIC,     /* NaN/Inf or divergence */
} bl_status;

typedef struct {
    bl_status code;
    char msg[512];
} bl_err;

/* Records the failure in err (may be NULL) and returns code, so callers can write
 * `return bl_fail(err, BL_ERR_FORMAT, "%s: bad header", path);` */
bl_status bl_fail(bl_err *err, bl_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const char *bl_status_name(bl_status s);
/* Puts "context: " in front of the message already in err (a caller adding the position or the
 * file to the error of a callee) and returns code. */
bl_status bl_fail_context(bl_err *err, bl_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Allocation: NULL on failure (never aborts). Sizes are checked for overflow. */
void *bl_malloc(size_t n);
void *bl_calloc(size_t count, size_t size);
void *bl_malloc_array(size_t count, size_t size);   /* count*size with overflow check */
void *bl_aligned_alloc(size_t n);                   /* 64-byte aligned, release with bl_aligned_free */
void bl_aligned_free(void *p);
void *bl_aligned_alloc_large(size_t n); /* the same; large ones 2 MiB-aligned, huge pages hinted */
char *bl_strdup(const char *s);
char *bl_strndup(const char *s, size_t n);
/* a*b and a+b with overflow detection: return false on overflow. */
bool bl_mul_overflows(size_t a, size_t b, size_t *out);
bool bl_add_overflows(size_t a, size_t b, size_t *out);

/* IEEE half and bfloat16 (round to nearest even; NaN preserved). */
float bl_f16_to_f32(uint16_t h);
uint16_t bl_f32_to_f16(float f);
float bl_bf16_to_f32(uint16_t h);
uint16_t bl_f32_to_bf16(float f);
/* Value after a round trip through f16: the value a stored FP16 vector really holds. */
static inline float bl_round_f16(float f) { return bl_f16_to_f32(bl_f32_to_f16(f)); }

/* Deterministic PRNG (xoshiro256**), seeded by splitmix64. One state per stream of work; never
 * shared between threads. */
typedef struct { uint64_t s[4]; } bl_rng;
void bl_rng_seed(bl_rng *r, uint64_t seed);
uint64_t bl_rng_u64(bl_rng *r);
float bl_rng_uniform(bl_rng *r);   /* [0, 1) */
float bl_rng_normal(bl_rng *r);    /* standard normal (Box-Muller) */

/* Progress of a long computation: fraction_done in [0, 1], called from the calling thread. */
typedef void (*bl_progress_fn)(void *ctx, double fraction_done);

/* Whole-file helpers. bl_read_file returns a NUL-terminated buffer (len excludes the NUL). */
bl_status bl_read_file(const char *path, char **data, size_t *len, bl_err *err);
/* Writes atomically: data goes to "<path>.tmp.<pid>", is fsync'ed, then renamed over path
 * (leftovers of killed writers of the same path are removed first). A path that exists and is
 * not a regular file (a device such as /dev/null, a pipe) is written in place, never replaced. */
bl_status bl_write_file_atomic(const char *path, const void *data, size_t len, bl_err *err);

/* Removes the leftovers "<name>.tmp.<pid>" (files or directories) that processes which no longer
 * run left in dir when they were killed while writing; every such name when name is NULL.
 * Leftovers of running processes are kept. Errors are ignored (best effort). */
void bl_remove_stale_tmp(const char *dir, const char *name);

/* ---- output directories (docs/errors.md) ----
 * Every command that writes a model directory (quantize, convert, distill, synth, compare) goes
 * through one prepare/commit pair:
 *   bl_outdir_prepare, before any fitting or training: refuses a target that is, contains or
 *     replaces an input, refuses an existing directory that is not a bitllm output (unless
 *     force), cleans or recovers the leftovers of killed runs, and creates "<target>.tmp.<pid>"
 *     beside the target, which the command then fills;
 *   bl_outdir_commit: marks the new directory as a bitllm output (file .bitllm-output), syncs it
 *     and moves it into place: renamed when the target does not exist, else swapped with the old
 *     one in one atomic exchange (renameat2 RENAME_EXCHANGE; where the file system lacks it: old
 *     renamed aside to "<target>.old.<pid>", new renamed in), then the old one is removed.
 * A run killed at any moment leaves the complete old directory or the complete new one, never a
 * mix; the next prepare of the same target removes what the dead run left beside it (or, killed
 * between the two renames of the fallback, puts the complete directory back in place). */
typedef struct {
    bool force;                /* replace an existing directory that is not a bitllm output */
    const char *const *inputs; /* files and directories the command reads (NULL entries skipped) */
    int n_inputs;
    const char *command;       /* recorded in the marker file, e.g. "quantize" */
    /* The target itself receives files before the commit (distillation checkpoints in
     * TARGET/checkpoint/, which must survive a kill): it is created now if missing and marked
     * as a bitllm output, and its checkpoint/ folder is carried (hard-linked) into the new
     * directory at the commit. */
    bool live;
} bl_outdir_opts;

typedef struct bl_outdir bl_outdir;
bl_status bl_outdir_prepare(const char *target, const bl_outdir_opts *o, bl_outdir **out,
                            bl_err *err);
/* The temporary directory the command writes the new files into. */
const char *bl_outdir_path(const bl_outdir *d);
/* The target as resolved (absolute). */
const char *bl_outdir_target(const bl_outdir *d);
/* Moves the new directory into place; frees d whether it succeeds or not. */
bl_status bl_outdir_commit(bl_outdir *d, bl_err *err);
/* Removes the temporary directory (failure, or a result not to be kept) and frees d; NULL is a
 * no-op. A live target keeps what was written into it. */
void bl_outdir_abort(bl_outdir *d);
/* For commands that write a single file (token files, score dumps): refuses a path that is, or
 * is inside, one of the inputs, or a directory. */
bl_status bl_output_file_check(const char *path, const char *const *inputs, int n_inputs,
                               bl_err *err);

/* ---- exact numbers in JSON (src/core/json.c) ----
 * A JSON number written by cJSON does not always read back bit for bit (15 significant digits
 * are kept whenever they read back within DBL_EPSILON). Values that must come back exactly are
 * stored as strings: doubles as hex floats ("%a"), 64-bit integers in decimal. The getters also
 * accept a plain JSON number (files written before) and return false when the key is missing or
 * malformed. */
struct cJSON;
bool bl_json_add_exact(struct cJSON *obj, const char *key, double v);
bool bl_json_get_exact(const struct cJSON *obj, const char *key, double *v);
bool bl_json_exact_value(const struct cJSON *item, double *v);
bool bl_json_add_i64(struct cJSON *obj, const char *key, int64_t v);
bool bl_json_get_i64(const struct cJSON *obj, const char *key, int64_t *v);
bool bl_json_add_u64(struct cJSON *obj, const char *key, uint64_t v);
/* Strict parsing for the file readers: text[0, len) must hold exactly one JSON value with only
 * whitespace after it (cJSON alone accepts trailing bytes, so a file holding two objects would
 * load its first silently) and no NUL character, neither a raw 0 byte nor a \u0000 escape
 * (cJSON would end the string there and drop the rest of it). NULL on failure, with *bad_at (may
 * be NULL) the byte offset where the text stops being valid; bl_json_refusal(text, len, at)
 * says why, for a message "not valid JSON (%s at byte %zu)". */
struct cJSON *bl_json_parse(const char *text, size_t len, size_t *bad_at);
const char *bl_json_refusal(const char *text, size_t len, size_t at);
/* Offset of the first NUL character in JSON text (a raw 0 byte, or a \u0000 escape not itself
 * escaped), SIZE_MAX when none. */
size_t bl_json_nul_at(const char *text, size_t len);

/* OpenBLAS's kernels. A DYNAMIC_ARCH OpenBLAS (Debian's) picks them once, when it loads, from the
 * CPU; a release older than the CPU falls back to its generic SSE3 kernels ("Prescott"): Debian's
 * 0.3.21 on an Intel Xeon of family 6 model 207 runs sgemm at ~30 GFLOP/s per core there, against
 * ~150 with its SkylakeX kernels, and every fit with it. bl_blas_core_for_cpu() is the
 * OPENBLAS_CORETYPE value that selects the CPU's vector kernels when OpenBLAS fell back to pre-AVX2
 * ones on a CPU where bl_cpu_best_isa() is AVX2 or AVX-512 ("Haswell", "SkylakeX"), NULL when it
 * did not or when OPENBLAS_CORETYPE is set (the user's choice is kept).
 * bl_blas_use_cpu_kernels(argv), called first in main(), sets the variable and executes the
 * program again (/proc/self/exe, the same argv), the only way to reach OpenBLAS's choice; it
 * returns when nothing is to be done, or after a note on stderr when the exec failed.
 * bl_blas_fallback_core() is, in the re-executed process, the kernels OpenBLAS had picked on its
 * own (NULL otherwise). */
const char *bl_blas_core_for_cpu(void);
void bl_blas_use_cpu_kernels(char **argv);
const char *bl_blas_fallback_core(void);

/* Read-only memory map of a whole file (falls back to reading into memory if mmap fails). Large
 * files are mapped at a 2 MiB-aligned address so they can later be made private in huge pages. */
typedef struct {
    const uint8_t *data;
    size_t size;
    bool mapped;     /* true: munmap on close; false: free */
    bool privatized; /* the pages are private memory (bl_mmap_privatize) */
    int fd;          /* the file, kept open while mapped (-1 if none) */
} bl_mmap;
bl_status bl_mmap_open(bl_mmap *m, const char *path, bl_err *err);
void bl_mmap_close(bl_mmap *m);
/* Replaces a mapped file's pages by private memory (transparent huge pages where the kernel
 * allows) holding the same bytes, at the same addresses, so every pointer into the map stays
 * valid. Weights streamed at decode are read up to 2× faster from private memory on machines
 * where page-cache mappings are costly (docs/performance.md). No-op when not mapped. */
bl_status bl_mmap_privatize(bl_mmap *m, const char *what, bl_err *err);
/* Gives back the memory of the whole pages inside [p, p+n) of the map: file-backed pages are
 * dropped, private ones are replaced by a view of the file, so in both cases the bytes read the
 * same afterwards (from the file, on demand) and the resident size shrinks by about n. */
void bl_mmap_release(const bl_mmap *m, const void *p, size_t n);

/* How a model's checkpoint files are brought in. BL_LOAD_MMAP: mapped, read on demand and shared
 * with the page cache. BL_LOAD_READ: mapped, then made private (bl_mmap_privatize); slower to
 * load and never shared, faster to stream on some machines. BL_LOAD_DEFAULT (0): the environment
 * variable BITLLM_LOAD=read|mmap when set, else mmap (bl_default_load_mode, read once). */
typedef enum { BL_LOAD_DEFAULT = 0, BL_LOAD_MMAP = 1, BL_LOAD_READ = 2 } bl_load_mode;
bl_load_mode bl_default_load_mode(void);

/* Wall clock in seconds (monotonic). */
double bl_time_s(void);
/* CPU seconds used by this process so far, all threads together. */
double bl_cpu_time_s(void);
/* Peak resident set size of this process in bytes (0 if unknown). */
size_t bl_peak_rss_bytes(void);
size_t bl_current_rss_bytes(void);

BL_API_END
#endif
