/* Output directories (src/core/outdir.c): a new directory appears in one step and replaces an
 * old bitllm output; unrelated directories are refused unless forced; an output is never an
 * input or a directory holding one (by path, symbolic link or hard link); leftovers of killed
 * runs are removed, or put back when a run died between the two renames of the fallback swap;
 * and a live target (distillation checkpoints) keeps its checkpoint through a failed run and
 * carries it into the committed directory. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bitllm/core.h"
#include "core/outdir_internal.h"
#include "test.h"

static char root[64];

static void path_of(char *buf, size_t cap, const char *rel) { snprintf(buf, cap, "%s/%s", root, rel); }

static void put(const char *rel, const char *text) {
    char p[256];
    path_of(p, sizeof p, rel);
    FILE *f = fopen(p, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static bool has(const char *rel) {
    char p[256];
    struct stat st;
    path_of(p, sizeof p, rel);
    return lstat(p, &st) == 0;
}

static bool holds(const char *rel, const char *text) {
    char p[256], *d = NULL;
    size_t n;
    path_of(p, sizeof p, rel);
    bool ok = bl_read_file(p, &d, &n, NULL) == BL_OK && strcmp(d, text) == 0;
    free(d);
    return ok;
}

static void mk(const char *rel) {
    char p[256];
    path_of(p, sizeof p, rel);
    mkdir(p, 0755);
}

/* Number of entries in root whose name starts with prefix. */
static int count_prefix(const char *prefix) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "exit $(ls -a '%s' | grep -c '^%s')", root, prefix);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* Writes one file into a prepared directory and commits. */
static bl_status write_commit(const char *rel, const bl_outdir_opts *o, const char *text,
                              bl_err *err) {
    char p[256], f[300];
    bl_outdir *d;
    path_of(p, sizeof p, rel);
    bl_status s = bl_outdir_prepare(p, o, &d, err);
    if (s) return s;
    snprintf(f, sizeof f, "%s/model.safetensors", bl_outdir_path(d));
    s = bl_write_file_atomic(f, text, strlen(text), err);
    if (s) {
        bl_outdir_abort(d);
        return s;
    }
    return bl_outdir_commit(d, err);
}

/* A process id that is not running: a child that has exited and been reaped. */
static long dead_pid(void) {
    pid_t p = fork();
    if (p == 0) _exit(0);
    int st;
    waitpid(p, &st, 0);
    return (long)p;
}

static void test_new_and_replace(void) {
    bl_err err = {0};
    bl_outdir_opts o = {.command = "test"};
    char p[256];
    path_of(p, sizeof p, "out");
    bl_outdir *d;
    REQUIRE(bl_outdir_prepare(p, &o, &d, &err) == BL_OK);
    CHECK(!has("out") && strstr(bl_outdir_path(d), "/out.tmp.") != NULL); /* beside, not in */
    bl_outdir_abort(d);
    CHECK(!has("out") && count_prefix("out.") == 0);
    REQUIRE(write_commit("out", &o, "one", &err) == BL_OK);
    CHECK(holds("out/model.safetensors", "one") && has("out/.bitllm-output"));
    REQUIRE(write_commit("out", &o, "two", &err) == BL_OK); /* a bitllm output is replaced */
    CHECK(holds("out/model.safetensors", "two"));
    CHECK(count_prefix("out.") == 0); /* neither .tmp.<pid> nor .old.<pid> left */
    /* the fallback swap (file systems without RENAME_EXCHANGE) gives the same result */
    char tmp[300], old[300];
    path_of(tmp, sizeof tmp, "out.tmp.1");
    path_of(old, sizeof old, "out.old.1");
    mk("out.tmp.1");
    put("out.tmp.1/model.safetensors", "three");
    REQUIRE(bl_outdir_swap(p, tmp, old, false, &err) == BL_OK);
    CHECK(holds("out/model.safetensors", "three") && count_prefix("out.") == 0);
    /* an empty directory is taken as is */
    mk("empty");
    CHECK(write_commit("empty", &o, "x", &err) == BL_OK && holds("empty/model.safetensors", "x"));
}

static void test_refusals(void) {
    bl_err err = {0};
    bl_outdir_opts o = {.command = "test"};
    /* an unrelated directory, unless forced */
    mk("mine");
    put("mine/notes.txt", "keep me");
    CHECK(write_commit("mine", &o, "m", &err) == BL_ERR_ARG);
    CHECK_MSG(strstr(err.msg, "not a bitllm output") && strstr(err.msg, "--force"), "%s",
              err.msg);
    CHECK(holds("mine/notes.txt", "keep me") && count_prefix("mine.") == 0);
    /* a bitllm output that also holds a file bitllm did not write */
    REQUIRE(write_commit("q", &o, "q", &err) == BL_OK);
    put("q/notes.txt", "mine");
    CHECK(write_commit("q", &o, "q2", &err) == BL_ERR_ARG && strstr(err.msg, "notes.txt"));
    bl_outdir_opts forced = {.force = true, .command = "test"};
    CHECK(write_commit("mine", &forced, "m", &err) == BL_OK);
    CHECK(holds("mine/model.safetensors", "m") && !has("mine/notes.txt"));
    /* a regular file */
    put("afile", "x");
    CHECK(write_commit("afile", &forced, "m", &err) == BL_ERR_ARG && strstr(err.msg, "directory"));
    /* the output is an input, holds one, or holds a link to one: refused even with --force */
    REQUIRE(write_commit("model", &o, "weights", &err) == BL_OK);
    char in[256], file[256];
    path_of(in, sizeof in, "model");
    path_of(file, sizeof file, "model/model.safetensors");
    const char *ins[] = {NULL, in};
    bl_outdir_opts io = {.force = true, .inputs = ins, .n_inputs = 2, .command = "test"};
    CHECK(write_commit("model", &io, "x", &err) == BL_ERR_ARG && strstr(err.msg, "is the input"));
    ins[1] = file;
    CHECK(write_commit("model", &io, "x", &err) == BL_ERR_ARG && strstr(err.msg, "holds the input"));
    char lnk[256];
    path_of(lnk, sizeof lnk, "model-link");
    REQUIRE(symlink(in, lnk) == 0);
    CHECK(write_commit("model-link", &io, "x", &err) == BL_ERR_ARG);
    put("elsewhere.safetensors", "w");
    char other[256], inside[256];
    path_of(other, sizeof other, "elsewhere.safetensors");
    path_of(inside, sizeof inside, "model/hardlink.safetensors");
    REQUIRE(link(other, inside) == 0); /* the input has a second name inside the target */
    ins[1] = other;
    CHECK(write_commit("model", &io, "x", &err) == BL_ERR_ARG && strstr(err.msg, "holds the input"));
    CHECK(holds("model/model.safetensors", "weights") && holds("elsewhere.safetensors", "w"));
    /* a single output file: not an input, and not a file of an input directory */
    CHECK(bl_output_file_check(file, ins + 1, 1, &err) == BL_OK);
    ins[1] = in;
    CHECK(bl_output_file_check(file, ins + 1, 1, &err) == BL_ERR_ARG);
    CHECK(bl_output_file_check(in, ins + 1, 1, &err) == BL_ERR_ARG);
    char fresh[256];
    path_of(fresh, sizeof fresh, "model/new-scores.jsonl"); /* a new name there is harmless */
    CHECK(bl_output_file_check(fresh, ins + 1, 1, &err) == BL_OK);
    /* a parent that does not exist or is a file: refused before any work */
    char bad[256];
    path_of(bad, sizeof bad, "afile/out");
    bl_outdir *d;
    CHECK(bl_outdir_prepare(bad, &o, &d, &err) == BL_ERR_IO);
    path_of(bad, sizeof bad, "missing/out");
    CHECK(bl_outdir_prepare(bad, &o, &d, &err) == BL_ERR_IO && strstr(err.msg, "missing"));
}

/* <target>.<kind>.<pid>/ with a model file, marked complete or not. */
static void leftover(const char *target, const char *kind, long pid, const char *text,
                     bool marker) {
    char name[96];
    snprintf(name, sizeof name, "%s.%s.%ld", target, kind, pid);
    mk(name);
    snprintf(name, sizeof name, "%s.%s.%ld/model.safetensors", target, kind, pid);
    put(name, text);
    snprintf(name, sizeof name, "%s.%s.%ld/.bitllm-output", target, kind, pid);
    if (marker) put(name, "{}");
}

static void test_leftovers(void) {
    bl_err err = {0};
    bl_outdir_opts o = {.command = "test"};
    REQUIRE(write_commit("kept", &o, "old", &err) == BL_OK);
    char name[64];
    const long dead = dead_pid();
    /* a run killed while writing: its directory beside the target, a file inside */
    snprintf(name, sizeof name, "kept.tmp.%ld", dead);
    mk(name);
    snprintf(name, sizeof name, "kept/model.safetensors.tmp.%ld", dead);
    put(name, "partial");
    REQUIRE(write_commit("kept", &o, "new", &err) == BL_OK);
    CHECK(holds("kept/model.safetensors", "new") && count_prefix("kept.") == 0);
    CHECK(!has(name));
    /* a leftover of a process that runs: somebody else writes the same target */
    snprintf(name, sizeof name, "kept.tmp.%ld", (long)getppid());
    mk(name);
    CHECK(write_commit("kept", &o, "x", &err) == BL_ERR_ARG && strstr(err.msg, "another process"));
    char p[256];
    path_of(p, sizeof p, name);
    rmdir(p);
    /* killed between "old aside" and "new in": the complete new one is put in place ... */
    leftover("gone", "old", dead, "old", true);
    leftover("gone", "tmp", dead, "new", true);
    bl_outdir *d;
    path_of(p, sizeof p, "gone");
    REQUIRE(bl_outdir_prepare(p, &o, &d, &err) == BL_OK);
    CHECK(holds("gone/model.safetensors", "new"));
    bl_outdir_abort(d);
    CHECK(count_prefix("gone.") == 0);
    /* ... and the old one when the new one was not complete (no marker yet) */
    leftover("lost", "old", dead, "old", true);
    leftover("lost", "tmp", dead, "new", false);
    path_of(p, sizeof p, "lost");
    REQUIRE(bl_outdir_prepare(p, &o, &d, &err) == BL_OK);
    CHECK(holds("lost/model.safetensors", "old"));
    bl_outdir_abort(d);
    CHECK(count_prefix("lost.") == 0);
    /* files written atomically remove the leftovers of their own killed writers */
    snprintf(name, sizeof name, "report.md.tmp.%ld", dead);
    put(name, "partial");
    path_of(p, sizeof p, "report.md");
    REQUIRE(bl_write_file_atomic(p, "done", 4, &err) == BL_OK);
    CHECK(holds("report.md", "done") && !has(name));
}

static void test_live_target(void) {
    bl_err err = {0};
    bl_outdir_opts o = {.command = "test", .live = true};
    char p[256];
    path_of(p, sizeof p, "run");
    bl_outdir *d;
    /* nothing written: the target made for the run goes again */
    REQUIRE(bl_outdir_prepare(p, &o, &d, &err) == BL_OK);
    CHECK(has("run/checkpoint") && has("run/.bitllm-output"));
    bl_outdir_abort(d);
    CHECK(!has("run"));
    /* a checkpoint written during the run survives a failure */
    REQUIRE(bl_outdir_prepare(p, &o, &d, &err) == BL_OK);
    put("run/checkpoint/state.safetensors", "step 2");
    bl_outdir_abort(d);
    CHECK(holds("run/checkpoint/state.safetensors", "step 2"));
    /* and is carried into the committed directory (the same file, not a copy) */
    REQUIRE(bl_outdir_prepare(p, &o, &d, &err) == BL_OK);
    char f[300];
    snprintf(f, sizeof f, "%s/model.safetensors", bl_outdir_path(d));
    REQUIRE(bl_write_file_atomic(f, "model", 5, &err) == BL_OK);
    char ck[256];
    path_of(ck, sizeof ck, "run/checkpoint/state.safetensors");
    struct stat before, after;
    REQUIRE(stat(ck, &before) == 0);
    REQUIRE(bl_outdir_commit(d, &err) == BL_OK);
    CHECK(holds("run/model.safetensors", "model") && holds("run/checkpoint/state.safetensors",
                                                          "step 2"));
    CHECK(stat(ck, &after) == 0 && after.st_ino == before.st_ino);
    CHECK(count_prefix("run.") == 0);
}

int main(void) {
    snprintf(root, sizeof root, "/tmp/bitllm-outdir-XXXXXX");
    if (!mkdtemp(root)) return 1;
    TEST_RUN(test_new_and_replace);
    TEST_RUN(test_refusals);
    TEST_RUN(test_leftovers);
    TEST_RUN(test_live_target);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
    return test_summary();
}
