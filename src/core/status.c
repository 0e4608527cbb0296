#include "bitllm/core.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

bl_status bl_fail(bl_err *err, bl_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

bl_status bl_prefix_error(bl_err *err, const char *prefix) {
    if (!err) return BL_ERR_FORMAT;
    size_t n = strlen(prefix);
    if (strncmp(err->msg, prefix, n) == 0 && err->msg[n] == ':') return err->code;
    /* The message moves right by n + 2 bytes (what no longer fits is cut off). */
    size_t cap = sizeof err->msg, keep = strnlen(err->msg, cap - 1);
    if (n + 2 >= cap) n = cap - 3;
    if (keep > cap - 1 - (n + 2)) keep = cap - 1 - (n + 2);
    memmove(err->msg + n + 2, err->msg, keep);
    memcpy(err->msg, prefix, n);
    memcpy(err->msg + n, ": ", 2);
    err->msg[n + 2 + keep] = 0;
    return err->code;
}

const char *bl_status_name(bl_status s) {
    switch (s) {
    case BL_OK: return "ok";
    case BL_ERR_IO: return "i/o error";
    case BL_ERR_FORMAT: return "malformed input";
    case BL_ERR_UNSUPPORTED: return "unsupported";
    case BL_ERR_ARG: return "invalid argument";
    case BL_ERR_NOMEM: return "out of memory";
    case BL_ERR_NUMERIC: return "numeric error";
    }
    return "unknown error";
}
