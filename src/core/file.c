#include "bitllm/core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

bl_status bl_read_file(const char *path, char **data, size_t *len, bl_err *err) {
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return bl_fail(err, BL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return bl_fail(err, BL_ERR_IO, "%s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return bl_fail(err, BL_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, n);
    }
    if (n && fread(buf, 1, n, f) != n) {
        free(buf);
        fclose(f);
        return bl_fail(err, BL_ERR_IO, "%s: short read", path);
    }
    fclose(f);
    buf[n] = 0;
    *data = buf;
    *len = n;
    return BL_OK;
}

static bool write_all(int fd, const void *data, size_t len) {
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        p += w;
        len -= (size_t)w;
    }
    return true;
}

bl_status bl_write_file_atomic(const char *path, const void *data, size_t len, bl_err *err) {
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        /* a device or a pipe (/dev/stdout, a FIFO): written in place, never replaced */
        if (S_ISDIR(st.st_mode)) return bl_fail(err, BL_ERR_IO, "%s is a directory", path);
        int fd = open(path, O_WRONLY);
        if (fd < 0) return bl_fail(err, BL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        bool ok = write_all(fd, data, len);
        int e = errno;
        ok = close(fd) == 0 && ok;
        return ok ? BL_OK : bl_fail(err, BL_ERR_IO, "%s: write failed: %s", path, strerror(e));
    }
    size_t plen = strlen(path) + 32;
    char *tmp = malloc(plen);
    if (!tmp) return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", path);
    /* leftovers "<path>.tmp.<pid>" of killed writers of the same file go first */
    const char *slash = strrchr(path, '/');
    if (slash) {
        snprintf(tmp, plen, "%.*s", (int)(slash - path) + (slash == path), path);
        bl_remove_stale_tmp(tmp, slash + 1);
    } else {
        bl_remove_stale_tmp(".", path);
    }
    snprintf(tmp, plen, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        bl_status s = bl_fail(err, BL_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return s;
    }
    if (!write_all(fd, data, len)) {
        bl_status s = bl_fail(err, BL_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        free(tmp);
        return s;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        bl_status s = bl_fail(err, BL_ERR_IO, "%s: sync failed: %s", tmp, strerror(errno));
        unlink(tmp);
        free(tmp);
        return s;
    }
    if (rename(tmp, path) != 0) {
        bl_status s = bl_fail(err, BL_ERR_IO, "%s: rename failed: %s", path, strerror(errno));
        unlink(tmp);
        free(tmp);
        return s;
    }
    free(tmp);
    return BL_OK;
}

static atomic_int g_load_mode = -1;

void bl_set_load_mode(bl_load_mode mode) { atomic_store(&g_load_mode, (int)mode); }

bl_load_mode bl_get_load_mode(void) {
    int v = atomic_load(&g_load_mode);
    if (v < 0) {
        const char *e = getenv("BITLLM_LOAD");
        int expected = -1;
        atomic_compare_exchange_strong(&g_load_mode, &expected,
                                       e && strcmp(e, "read") == 0 ? BL_LOAD_READ : BL_LOAD_MMAP);
        v = atomic_load(&g_load_mode);
    }
    return (bl_load_mode)v;
}

#define HUGE_PAGE ((size_t)2 << 20)

/* The whole file into private memory: 2 MiB-aligned and advised to use transparent huge pages
 * when large, so a decode pass over the weights takes few TLB misses. */
static bl_status read_whole(int fd, const char *path, bl_mmap *m, bl_err *err) {
    const bool large = m->size >= 2 * HUGE_PAGE;
    void *p = NULL;
    if (posix_memalign(&p, large ? HUGE_PAGE : 64, m->size) != 0)
        return bl_fail(err, BL_ERR_NOMEM, "%s: cannot map or allocate %zu bytes", path, m->size);
#ifdef MADV_HUGEPAGE
    if (large) (void)madvise(p, m->size / HUGE_PAGE * HUGE_PAGE, MADV_HUGEPAGE); /* a hint */
#endif
    uint8_t *buf = p;
    size_t got = 0;
    while (got < m->size) {
        ssize_t r = read(fd, buf + got, m->size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    if (got != m->size) {
        free(buf);
        return bl_fail(err, BL_ERR_IO, "%s: short read (%zu of %zu bytes)", path, got, m->size);
    }
    m->data = buf;
    return BL_OK;
}

bl_status bl_mmap_open(bl_mmap *m, const char *path, bl_err *err) {
    memset(m, 0, sizeof *m);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return bl_fail(err, BL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return bl_fail(err, BL_ERR_IO, "%s: not a regular file", path);
    }
    m->size = (size_t)st.st_size;
    if (m->size == 0) {
        close(fd);
        m->data = (const uint8_t *)"";
        return BL_OK;
    }
    if (bl_get_load_mode() == BL_LOAD_MMAP) {
        void *p = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p != MAP_FAILED) {
            close(fd);
            m->data = p;
            m->mapped = true;
            return BL_OK;
        }
    }
    bl_status s = read_whole(fd, path, m, err);
    close(fd);
    if (s) memset(m, 0, sizeof *m);
    return s;
}

void bl_mmap_close(bl_mmap *m) {
    if (m->size == 0) {
        /* nothing mapped or allocated */
    } else if (m->mapped) {
        munmap((void *)m->data, m->size);
    } else {
        free((void *)m->data);
    }
    memset(m, 0, sizeof *m);
}

double bl_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

size_t bl_peak_rss_bytes(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (size_t)ru.ru_maxrss * 1024;
}

size_t bl_current_rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    long pages = 0, rss = 0;
    int ok = fscanf(f, "%ld %ld", &pages, &rss);
    fclose(f);
    if (ok != 2) return 0;
    return (size_t)rss * (size_t)sysconf(_SC_PAGESIZE);
}
