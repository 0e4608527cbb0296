/* Output directories written beside their target and moved into place in one step, the checks
 * that keep an output from replacing an input or an unrelated directory, and the clean-up of
 * what killed runs leave behind (include/bitllm/core.h, docs/errors.md). */
#include "core/outdir_internal.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MARKER ".bitllm-output"

struct bl_outdir {
    char *target; /* absolute */
    char *parent, *base;
    char *tmp;    /* <target>.tmp.<pid> */
    char command[32];
    bool live;
    bool created; /* prepare created the (live) target */
};

static char *join(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", a, b);
    return p;
}

static char *sibling(const char *parent, const char *base, const char *kind, long pid) {
    size_t n = strlen(parent) + strlen(base) + strlen(kind) + 32;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s.%s.%ld", parent, base, kind, pid);
    return p;
}

static bool pid_alive(long pid) {
    if (pid <= 0 || pid != (long)(pid_t)pid) return false;
    return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

/* entry == prefix + "." + kind + "." + digits (prefix NULL: any non-empty prefix); *pid = digits */
static bool leftover_name(const char *entry, const char *prefix, const char *kind, long *pid) {
    char pat[16];
    snprintf(pat, sizeof pat, ".%s.", kind);
    const char *at = NULL;
    if (prefix) {
        size_t n = strlen(prefix);
        if (strncmp(entry, prefix, n) != 0 || strncmp(entry + n, pat, strlen(pat)) != 0)
            return false;
        at = entry + n + strlen(pat);
    } else {
        const char *p = strstr(entry, pat), *last = NULL;
        for (; p; p = strstr(p + 1, pat)) last = p;
        if (!last || last == entry) return false;
        at = last + strlen(pat);
    }
    if (!*at) return false;
    long v = 0;
    for (const char *c = at; *c; c++) {
        if (*c < '0' || *c > '9' || v > 100000000L) return false;
        v = v * 10 + (*c - '0');
    }
    *pid = v;
    return true;
}

/* Removes a file, a symbolic link, or a directory with everything in it (links not followed). */
int bl_remove_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(st.st_mode)) return unlink(path);
    DIR *d = opendir(path);
    if (!d) return -1;
    int rc = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char *p = join(path, e->d_name);
        if (!p || bl_remove_tree(p) != 0) rc = -1;
        free(p);
    }
    closedir(d);
    return rmdir(path) == 0 ? rc : -1;
}

void bl_remove_stale_tmp(const char *dir, const char *name) {
    DIR *d = opendir(dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        long pid;
        if (!leftover_name(e->d_name, name, "tmp", &pid) || pid == (long)getpid() ||
            pid_alive(pid))
            continue;
        char *p = join(dir, e->d_name);
        if (p) (void)bl_remove_tree(p);
        free(p);
    }
    closedir(d);
}

static void fsync_dir(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return;
    (void)fsync(fd);
    close(fd);
}

/* ---- where the target is ---- */

/* Absolute target, its parent and last component. The target may not exist; its parent must. */
static bl_status resolve(const char *path, char **abs, char **parent, char **base, bl_err *err) {
    *abs = *parent = *base = NULL;
    if (!path || !*path) return bl_fail(err, BL_ERR_ARG, "empty output path");
    char *real = realpath(path, NULL);
    if (!real) {
        if (errno != ENOENT)
            return bl_fail(err, BL_ERR_IO, "%s: %s", path, strerror(errno));
        char *copy = bl_strdup(path);
        if (!copy) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
        size_t n = strlen(copy);
        while (n > 1 && copy[n - 1] == '/') copy[--n] = 0;
        char *slash = strrchr(copy, '/');
        const char *pdir = slash ? (slash == copy ? "/" : copy) : ".";
        const char *name = slash ? slash + 1 : copy;
        if (slash && slash != copy) *slash = 0;
        char *rp = realpath(pdir, NULL);
        if (!rp) {
            bl_status s = bl_fail(err, BL_ERR_IO, "%s: the folder %s does not exist or cannot be "
                                  "read: %s", path, pdir, strerror(errno));
            free(copy);
            return s;
        }
        real = strcmp(rp, "/") == 0 ? join("", name) : join(rp, name);
        free(rp);
        free(copy);
        if (!real) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    }
    if (strcmp(real, "/") == 0) {
        free(real);
        return bl_fail(err, BL_ERR_ARG, "%s: cannot write the root directory", path);
    }
    char *slash = strrchr(real, '/');
    *base = bl_strdup(slash + 1);
    *parent = slash == real ? bl_strdup("/") : bl_strndup(real, (size_t)(slash - real));
    *abs = real;
    if (!*base || !*parent) {
        free(*base);
        free(*parent);
        free(real);
        *abs = *parent = *base = NULL;
        return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    }
    return BL_OK;
}

/* ---- outputs against inputs ---- */

static bool same_file(const struct stat *a, const struct stat *b) {
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

/* Whether the directory dir (or its checkpoint/ folder) holds a name for the file st. */
static bool dir_holds_inode(const char *dir, const struct stat *st, int depth) {
    DIR *d = opendir(dir);
    if (!d) return false;
    bool found = false;
    for (struct dirent *e; !found && (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char *p = join(dir, e->d_name);
        struct stat s2;
        if (p && lstat(p, &s2) == 0) {
            if (S_ISDIR(s2.st_mode) && depth > 0) found = dir_holds_inode(p, st, depth - 1);
            else found = same_file(&s2, st);
        }
        free(p);
    }
    closedir(d);
    return found;
}

/* An output at abs (a directory when is_dir) must not be an input, hold one, or (a file
 * output) replace a file inside an input directory. */
static bl_status check_inputs(const char *abs, bool is_dir, const char *const *inputs, int n,
                              bl_err *err) {
    struct stat tst;
    const bool exists = stat(abs, &tst) == 0;
    const size_t tl = strlen(abs);
    for (int i = 0; i < n; i++) {
        if (!inputs || !inputs[i] || !*inputs[i]) continue;
        char *ri = realpath(inputs[i], NULL);
        if (!ri) continue; /* a missing input is the loader's error to report */
        struct stat ist;
        bool clash = false, inside = false;
        if (strcmp(ri, abs) == 0 || (exists && stat(ri, &ist) == 0 && same_file(&ist, &tst))) {
            clash = true;
        } else if (is_dir && strncmp(ri, abs, tl) == 0 && ri[tl] == '/') {
            clash = inside = true;
        } else if (exists && is_dir) {
            /* by inode: the input below the target through another path (bind mount, link) */
            char *p = bl_strdup(ri);
            for (char *s; p && !clash && (s = strrchr(p, '/')) && s != p;) {
                *s = 0;
                struct stat a;
                clash = inside = stat(p, &a) == 0 && same_file(&a, &tst);
            }
            free(p);
            if (!clash && stat(ri, &ist) == 0 && !S_ISDIR(ist.st_mode))
                clash = inside = dir_holds_inode(abs, &ist, 1);
        } else if (!is_dir && exists) {
            /* a file output replacing a file of an input directory */
            size_t rl = strlen(ri);
            clash = inside = strncmp(abs, ri, rl) == 0 && abs[rl] == '/';
        }
        if (clash) {
            bl_status s = bl_fail(err, BL_ERR_ARG, inside
                ? (is_dir ? "refusing to write %s: it holds the input %s, which replacing it "
                            "would delete; choose another output"
                          : "refusing to write %s: it would replace a file of the input %s; "
                            "choose another output")
                : "refusing to write %s: it is the input %s; choose another output",
                abs, inputs[i]);
            free(ri);
            return s;
        }
        free(ri);
    }
    return BL_OK;
}

bl_status bl_output_file_check(const char *path, const char *const *inputs, int n_inputs,
                               bl_err *err) {
    char *abs, *parent, *base;
    bl_status s = resolve(path, &abs, &parent, &base, err);
    if (s) return s;
    struct stat st;
    if (stat(abs, &st) == 0 && S_ISDIR(st.st_mode))
        s = bl_fail(err, BL_ERR_ARG, "%s is a directory; give a file name", path);
    if (!s) s = check_inputs(abs, false, inputs, n_inputs, err);
    free(abs);
    free(parent);
    free(base);
    return s;
}

/* ---- what an existing target holds ---- */

/* Names bitllm writes into a model directory (docs/format.md). */
static bool known_entry(const char *name) {
    static const char *const known[] = {MARKER,           "config.json",    "model.safetensors",
                                        "tokenizer.json", "tokenizer_config.json",
                                        "tokenizer.bin",  "tokenizer.gguf", "checkpoint"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(name, known[i]) == 0) return true;
    long pid;
    return leftover_name(name, NULL, "tmp", &pid);
}

/* Directories written before the marker file existed: quantized models and synthetic models
 * say so in their config.json. */
static bool legacy_output(const char *dir) {
    char *p = join(dir, "config.json"), *text = NULL;
    size_t len;
    bool yes = false;
    if (p && bl_read_file(p, &text, &len, NULL) == BL_OK) {
        cJSON *j = bl_json_parse(text, len, NULL);
        const cJSON *qc = cJSON_GetObjectItemCaseSensitive(j, "quantization_config");
        const cJSON *qm = cJSON_GetObjectItemCaseSensitive(qc, "quant_method");
        yes = (cJSON_IsString(qm) && strcmp(qm->valuestring, "bitllm") == 0) ||
              cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "bitllm_synthetic"));
        cJSON_Delete(j);
    }
    free(text);
    free(p);
    return yes;
}

/* 0: empty or a bitllm output holding only bitllm's files; otherwise fails with the reason. */
static bl_status check_existing(const char *dir, const char *shown, bl_err *err) {
    DIR *d = opendir(dir);
    if (!d) return bl_fail(err, BL_ERR_IO, "%s: cannot read: %s", shown, strerror(errno));
    char foreign[256] = "";
    bool any = false, marker = false;
    for (struct dirent *e; (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        any = true;
        if (strcmp(e->d_name, MARKER) == 0) marker = true;
        if (!foreign[0] && !known_entry(e->d_name))
            snprintf(foreign, sizeof foreign, "%s", e->d_name);
    }
    closedir(d);
    if (!any) return BL_OK;
    if (!marker && !legacy_output(dir))
        return bl_fail(err, BL_ERR_ARG, "%s exists and is not a bitllm output directory; choose "
                       "another output or pass --force to replace it and everything in it",
                       shown);
    if (foreign[0])
        return bl_fail(err, BL_ERR_ARG, "%s is a bitllm output but also holds %s, which bitllm "
                       "did not write; move it away or pass --force to replace the directory "
                       "and everything in it", shown, foreign);
    return BL_OK;
}

static bl_status write_marker(const char *dir, const char *command, bl_err *err) {
    char text[128], *p = join(dir, MARKER);
    if (!p) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    snprintf(text, sizeof text, "{\"bitllm\": \"%s\", \"command\": \"%s\"}\n", BITLLM_VERSION,
             command);
    bl_status s = bl_write_file_atomic(p, text, strlen(text), err);
    free(p);
    return s;
}

static bool has_marker(const char *dir) {
    char *p = join(dir, MARKER);
    struct stat st;
    bool yes = p && stat(p, &st) == 0;
    free(p);
    return yes;
}

/* ---- leftovers of killed runs beside the target ---- */

static bl_status clean_beside(const char *parent, const char *base, const char *target,
                              bl_err *err) {
    DIR *d = opendir(parent);
    if (!d) return bl_fail(err, BL_ERR_IO, "%s: cannot read: %s", parent, strerror(errno));
    long olds[8];
    int n_old = 0;
    bl_status s = BL_OK;
    for (struct dirent *e; !s && (e = readdir(d));) {
        long pid;
        const bool tmp = leftover_name(e->d_name, base, "tmp", &pid);
        if (!tmp && !leftover_name(e->d_name, base, "old", &pid)) continue;
        if (pid != (long)getpid() && pid_alive(pid))
            s = bl_fail(err, BL_ERR_ARG, "%s/%s: another process (pid %ld) is writing %s; wait "
                        "for it to finish, or remove the leftover if that process is not bitllm",
                        parent, e->d_name, pid, target);
        else if (!tmp && n_old < 8)
            olds[n_old++] = pid;
    }
    closedir(d);
    if (s) return s;
    /* killed between the two renames of the fallback swap: the target is missing, the old
     * directory is beside it, and the new one is complete when it carries the marker */
    struct stat st;
    for (int i = 0; i < n_old && lstat(target, &st) != 0 && errno == ENOENT; i++) {
        char *old = sibling(parent, base, "old", olds[i]);
        char *tmp = sibling(parent, base, "tmp", olds[i]);
        if (old && tmp) {
            if (has_marker(tmp) && rename(tmp, target) == 0) fsync_dir(parent);
            else if (rename(old, target) == 0) fsync_dir(parent);
        }
        free(old);
        free(tmp);
    }
    d = opendir(parent);
    for (struct dirent *e; d && (e = readdir(d));) {
        long pid;
        if ((leftover_name(e->d_name, base, "tmp", &pid) ||
             leftover_name(e->d_name, base, "old", &pid)) && !pid_alive(pid)) {
            char *p = join(parent, e->d_name);
            if (p) (void)bl_remove_tree(p);
            free(p);
        }
    }
    if (d) closedir(d);
    return BL_OK;
}

/* ---- prepare / commit ---- */

void bl_outdir_abort(bl_outdir *d) {
    if (!d) return;
    if (d->tmp) (void)bl_remove_tree(d->tmp);
    if (d->created) { /* a live target this run created and never wrote into goes again */
        char *ck = join(d->target, "checkpoint"), *mk = join(d->target, MARKER);
        if (ck && mk && rmdir(ck) == 0 && unlink(mk) == 0) (void)rmdir(d->target);
        free(ck);
        free(mk);
    }
    free(d->target);
    free(d->parent);
    free(d->base);
    free(d->tmp);
    free(d);
}

const char *bl_outdir_path(const bl_outdir *d) { return d->tmp; }
const char *bl_outdir_target(const bl_outdir *d) { return d->target; }

static bl_status prepare_live(bl_outdir *d, bool existed, bl_err *err) {
    if (!existed && mkdir(d->target, 0755) != 0)
        return bl_fail(err, BL_ERR_IO, "%s: cannot create: %s", d->target, strerror(errno));
    d->created = !existed;
    bl_status s = has_marker(d->target) ? BL_OK : write_marker(d->target, d->command, err);
    char *ck = join(d->target, "checkpoint");
    if (!ck) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    if (!s && mkdir(ck, 0755) != 0 && errno != EEXIST)
        s = bl_fail(err, BL_ERR_IO, "%s: cannot create: %s", ck, strerror(errno));
    if (!s && access(ck, W_OK | X_OK) != 0)
        s = bl_fail(err, BL_ERR_IO, "%s: cannot write: %s", ck, strerror(errno));
    if (!s) bl_remove_stale_tmp(ck, NULL);
    free(ck);
    return s;
}

bl_status bl_outdir_prepare(const char *target, const bl_outdir_opts *o, bl_outdir **out,
                            bl_err *err) {
    *out = NULL;
    bl_outdir *d = calloc(1, sizeof *d);
    if (!d) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    d->live = o && o->live;
    snprintf(d->command, sizeof d->command, "%s", o && o->command ? o->command : "bitllm");
    bl_status s = resolve(target, &d->target, &d->parent, &d->base, err);
    if (!s) s = clean_beside(d->parent, d->base, d->target, err);
    struct stat st;
    const bool existed = !s && lstat(d->target, &st) == 0;
    if (existed && !S_ISDIR(st.st_mode))
        s = bl_fail(err, BL_ERR_ARG, "%s exists and is not a directory", target);
    if (!s) s = check_inputs(d->target, true, o ? o->inputs : NULL, o ? o->n_inputs : 0, err);
    if (!s && existed) {
        bl_remove_stale_tmp(d->target, NULL);
        if (!(o && o->force)) s = check_existing(d->target, target, err);
    }
    if (!s && !(d->tmp = sibling(d->parent, d->base, "tmp", (long)getpid())))
        s = bl_fail(err, BL_ERR_NOMEM, "out of memory");
    if (!s) {
        (void)bl_remove_tree(d->tmp); /* this process's own earlier attempt */
        if (mkdir(d->tmp, 0755) != 0) {
            s = bl_fail(err, BL_ERR_IO, "cannot write %s: cannot create %s: %s", target, d->tmp,
                        strerror(errno));
            free(d->tmp);
            d->tmp = NULL;
        }
    }
    if (!s && d->live) s = prepare_live(d, existed, err);
    if (s) {
        bl_outdir_abort(d);
        return s;
    }
    *out = d;
    return BL_OK;
}

/* Hard-links (or copies) the files of TARGET/checkpoint into the new directory. */
static bl_status carry_checkpoint(const bl_outdir *d, bl_err *err) {
    char *from = join(d->target, "checkpoint"), *to = join(d->tmp, "checkpoint");
    bl_status s = from && to ? BL_OK : bl_fail(err, BL_ERR_NOMEM, "out of memory");
    DIR *dir = s ? NULL : opendir(from);
    if (!s && dir && mkdir(to, 0755) != 0 && errno != EEXIST)
        s = bl_fail(err, BL_ERR_IO, "%s: cannot create: %s", to, strerror(errno));
    for (struct dirent *e; !s && dir && (e = readdir(dir));) {
        long pid;
        if (e->d_name[0] == '.' || leftover_name(e->d_name, NULL, "tmp", &pid)) continue;
        char *a = join(from, e->d_name), *b = join(to, e->d_name);
        struct stat st;
        if (!a || !b) {
            s = bl_fail(err, BL_ERR_NOMEM, "out of memory");
        } else if (lstat(a, &st) == 0 && S_ISREG(st.st_mode) && link(a, b) != 0) {
            char *data;
            size_t len;
            s = bl_read_file(a, &data, &len, err);
            if (!s) {
                s = bl_write_file_atomic(b, data, len, err);
                free(data);
            }
        }
        free(a);
        free(b);
    }
    if (dir) closedir(dir);
    if (!s) fsync_dir(to);
    free(from);
    free(to);
    return s;
}

bl_status bl_outdir_swap(const char *target, const char *tmp, const char *old, bool exchange,
                         bl_err *err) {
    struct stat st;
    if (lstat(target, &st) != 0) {
        if (rename(tmp, target) != 0)
            return bl_fail(err, BL_ERR_IO, "%s: cannot rename %s into place: %s", target, tmp,
                           strerror(errno));
        return BL_OK;
    }
#ifdef SYS_renameat2
    if (exchange) {
        if (syscall(SYS_renameat2, AT_FDCWD, tmp, AT_FDCWD, target, 2 /* RENAME_EXCHANGE */) ==
            0) {
            (void)bl_remove_tree(tmp); /* now the old directory */
            return BL_OK;
        }
        if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP && errno != ENOTSUP)
            return bl_fail(err, BL_ERR_IO, "%s: cannot exchange it with %s: %s", target, tmp,
                           strerror(errno));
    }
#else
    (void)exchange;
#endif
    /* no atomic exchange here: old aside, new in, old removed */
    if (rename(target, old) != 0)
        return bl_fail(err, BL_ERR_IO, "%s: cannot rename it to %s: %s", target, old,
                       strerror(errno));
    if (rename(tmp, target) != 0) {
        bl_status s = bl_fail(err, BL_ERR_IO, "%s: cannot rename %s into place: %s", target, tmp,
                              strerror(errno));
        (void)rename(old, target);
        return s;
    }
    (void)bl_remove_tree(old);
    return BL_OK;
}

bl_status bl_outdir_commit(bl_outdir *d, bl_err *err) {
    bl_status s = write_marker(d->tmp, d->command, err);
    if (!s && d->live) s = carry_checkpoint(d, err);
    char *old = s ? NULL : sibling(d->parent, d->base, "old", (long)getpid());
    if (!s && !old) s = bl_fail(err, BL_ERR_NOMEM, "out of memory");
    if (!s) {
        fsync_dir(d->tmp);
        s = bl_outdir_swap(d->target, d->tmp, old, true, err);
    }
    if (!s) {
        fsync_dir(d->parent);
        free(d->tmp);
        d->tmp = NULL; /* nothing left to remove */
    }
    d->created = false; /* the target now holds the result (or the failure's checkpoints) */
    free(old);
    bl_outdir_abort(d);
    return s;
}
