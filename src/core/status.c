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

bl_status bl_fail_context(bl_err *err, bl_status code, const char *fmt, ...) {
    if (!err) return code;
    char ctx[256], both[sizeof ctx + sizeof err->msg + 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof ctx, fmt, ap);
    va_end(ap);
    snprintf(both, sizeof both, "%s: %s", ctx, err->msg);
    memcpy(err->msg, both, sizeof err->msg - 1); /* cut to the message size */
    err->msg[sizeof err->msg - 1] = 0;
    err->code = code;
    return code;
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
