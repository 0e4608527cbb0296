/* Replays every fuzz target (fuzz/targets.c) on its seed corpus (fuzz/corpus/<target>/) and on
 * its regression files (tests/regress/<target>/), in the release and the sanitizer builds. A
 * regression file is an input that once crashed a parser or got a wrong answer; beside it,
 * <name>.expect holds "OK" (the input must load) or a text the error message must contain (the
 * input must be refused with that reason). Seeds whose name starts with "ok-" must load. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "targets.h"
#include "test.h"

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* Sorted names of the plain entries of dir (not starting with '.'); NULL when dir is absent. */
static char **list_dir(const char *dir, int *n) {
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return NULL;
    char **v = NULL;
    int cap = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 32;
            v = realloc(v, (size_t)cap * sizeof *v);
        }
        v[(*n)++] = strdup(e->d_name);
    }
    closedir(d);
    if (*n) qsort(v, (size_t)*n, sizeof *v, cmp_str);
    return v;
}

static unsigned char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc((size_t)(n > 0 ? n : 1) + 1);
    *len = fread(p, 1, (size_t)(n > 0 ? n : 0), f);
    fclose(f);
    p[*len] = 0;
    return p;
}

static int files_run;

/* Runs every file of dir through t; checks .expect files (regress) or "ok-" names (seeds). */
static void replay_dir(const bl_fuzz_target *t, const char *dir, bool regress) {
    int n;
    char **names = list_dir(dir, &n);
    for (int i = 0; i < n; i++) {
        if (ends_with(names[i], ".expect")) continue;
        char path[4096], epath[4200];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        size_t len = 0;
        unsigned char *data = read_all(path, &len);
        CHECK_MSG(data != NULL, "cannot read %s", path);
        if (!data) continue;
        bl_err err = {0};
        bl_status s = t->fn(data, len, &err);
        files_run++;
        free(data);
        size_t elen = 0;
        snprintf(epath, sizeof epath, "%s.expect", path);
        char *want = regress ? (char *)read_all(epath, &elen) : NULL;
        if (want) {
            while (elen && (want[elen - 1] == '\n' || want[elen - 1] == '\r')) want[--elen] = 0;
            if (strcmp(want, "OK") == 0)
                CHECK_MSG(s == BL_OK, "%s: expected to load, got: %s", path, err.msg);
            else
                CHECK_MSG(s != BL_OK && strstr(err.msg, want) != NULL,
                          "%s: expected an error containing \"%s\", got status %d: %s", path,
                          want, (int)s, s ? err.msg : "");
            free(want);
        } else if (!regress && strncmp(names[i], "ok-", 3) == 0) {
            CHECK_MSG(s == BL_OK, "seed %s: expected to load, got: %s", path, err.msg);
        } else if (regress) {
            CHECK_MSG(0, "%s has no %s.expect", path, names[i]);
        }
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

static void test_replay(void) {
    for (int i = 0; i < bl_fuzz_n_targets; i++) {
        const bl_fuzz_target *t = &bl_fuzz_targets[i];
        char dir[4096];
        int before = files_run;
        snprintf(dir, sizeof dir, "%s/fuzz/corpus/%s", BITLLM_SOURCE_DIR, t->name);
        replay_dir(t, dir, false);
        int seeds = files_run - before;
        CHECK_MSG(seeds > 0, "no seeds for fuzz target %s in %s", t->name, dir);
        snprintf(dir, sizeof dir, "%s/tests/regress/%s", BITLLM_SOURCE_DIR, t->name);
        replay_dir(t, dir, true);
        fprintf(stderr, "  %-15s %3d seeds, %3d regression files\n", t->name, seeds,
                files_run - before - seeds);
    }
}

int main(void) {
    TEST_RUN(test_replay);
    return test_summary();
}
