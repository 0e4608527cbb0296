#include "bitllm/core.h"

#include <stdarg.h>
#include <stdio.h>

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
