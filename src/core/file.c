#define _GNU_SOURCE /* mremap */
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
#include <stdint.h>
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

/* -1 until read; racing first uses all compute the same value. */
static atomic_int g_default_load = -1;

bl_load_mode bl_default_load_mode(void) {
    int v = atomic_load_explicit(&g_default_load, memory_order_relaxed);
    if (v < 0) {
        const char *e = getenv("BITLLM_LOAD");
        v = e && strcmp(e, "read") == 0 ? BL_LOAD_READ : BL_LOAD_MMAP;
        atomic_store_explicit(&g_default_load, v, memory_order_relaxed);
    }
    return (bl_load_mode)v;
}

#define HUGE_PAGE ((size_t)2 << 20)

static size_t page_size(void) { return (size_t)sysconf(_SC_PAGESIZE); }
static size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

/* Address space for len bytes at a 2 MiB boundary (PROT_NONE, nothing committed), so a mapping
 * placed there can be backed by huge pages; NULL on failure. */
static void *reserve_aligned(size_t len) {
    void *raw = mmap(NULL, len + HUGE_PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                     -1, 0);
    if (raw == MAP_FAILED) return NULL;
    uintptr_t a = (uintptr_t)raw, lo = (a + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1);
    if (lo > a) munmap(raw, lo - a);
    const uintptr_t end = a + len + HUGE_PAGE;
    if (end > lo + len) munmap((void *)(lo + len), end - (lo + len));
    return (void *)lo;
}

/* The whole file into heap memory: the fallback when mapping is impossible. */
static bl_status read_whole(int fd, const char *path, bl_mmap *m, bl_err *err) {
    uint8_t *buf = malloc(m->size);
    if (!buf) return bl_fail(err, BL_ERR_NOMEM, "%s: cannot map or allocate %zu bytes", path, m->size);
    size_t got = 0;
    while (got < m->size) {
        ssize_t r = pread(fd, buf + got, m->size - got, (off_t)got);
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
    m->fd = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
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
    void *want = m->size >= 2 * HUGE_PAGE ? reserve_aligned(round_up(m->size, page_size())) : NULL;
    void *p = mmap(want, m->size, PROT_READ, MAP_PRIVATE | (want ? MAP_FIXED : 0), fd, 0);
    if (p == MAP_FAILED && want) {
        munmap(want, round_up(m->size, page_size()));
        p = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
    }
    if (p != MAP_FAILED) {
        m->data = p;
        m->mapped = true;
        m->fd = fd;
        return BL_OK;
    }
    bl_status s = read_whole(fd, path, m, err);
    close(fd);
    if (s) {
        memset(m, 0, sizeof *m);
        m->fd = -1;
    }
    return s;
}

bl_status bl_mmap_privatize(bl_mmap *m, const char *what, bl_err *err) {
    if (!m->mapped || m->privatized || m->fd < 0 || m->size == 0) return BL_OK;
    const size_t len = round_up(m->size, page_size());
    const bool large = m->size >= 2 * HUGE_PAGE;
    void *q = large ? reserve_aligned(len) : NULL;
    q = mmap(q, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | (q ? MAP_FIXED : 0), -1,
             0);
    if (q == MAP_FAILED)
        return bl_fail(err, BL_ERR_NOMEM, "%s: cannot allocate %zu bytes of private memory", what,
                       len);
#ifdef MADV_HUGEPAGE
    if (large) (void)madvise(q, len / HUGE_PAGE * HUGE_PAGE, MADV_HUGEPAGE); /* a hint */
#endif
    uint8_t *buf = q;
    size_t got = 0;
    while (got < m->size) {
        ssize_t r = pread(m->fd, buf + got, m->size - got, (off_t)got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    if (got != m->size) {
        munmap(q, len);
        return bl_fail(err, BL_ERR_IO, "%s: short read (%zu of %zu bytes)", what, got, m->size);
    }
    (void)mprotect(q, len, PROT_READ);
    /* Moves the private pages over the file mapping; the old mapping goes away atomically. */
    void *r = mremap(q, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)m->data);
    if (r == MAP_FAILED) {
        munmap(q, len);
        return bl_fail(err, BL_ERR_NOMEM, "%s: cannot move private memory over the mapping: %s",
                       what, strerror(errno));
    }
    m->privatized = true;
    return BL_OK;
}

void bl_mmap_release(const bl_mmap *m, const void *p, size_t n) {
    const uint8_t *a = p, *b = a + n;
    if (!m->mapped || a < m->data || b > m->data + m->size) return;
    const uintptr_t page = (uintptr_t)page_size();
    uintptr_t lo = ((uintptr_t)a + page - 1) & ~(page - 1), hi = (uintptr_t)b & ~(page - 1);
    if (hi <= lo) return;
    if (!m->privatized) {
        madvise((void *)lo, hi - lo, MADV_DONTNEED);
        return;
    }
    /* private pages: map the same bytes of the file over them (the anonymous pages are freed) */
    (void)mmap((void *)lo, hi - lo, PROT_READ, MAP_PRIVATE | MAP_FIXED, m->fd,
               (off_t)(lo - (uintptr_t)m->data));
}

void bl_mmap_close(bl_mmap *m) {
    if (m->size == 0) {
        /* nothing mapped or allocated */
    } else if (m->mapped) {
        munmap((void *)m->data, round_up(m->size, page_size()));
    } else {
        free((void *)m->data);
    }
    if (m->fd >= 0) close(m->fd);
    memset(m, 0, sizeof *m);
    m->fd = -1;
}

double bl_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double bl_cpu_time_s(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0) return 0.0;
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
