/* libFuzzer entry point for one target, chosen at compile time with -DBL_FUZZ_TARGET=<function>
 * (CMake builds one fuzz_<name> program per target of fuzz/targets.c). */
#include "targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    bl_err err;
    (void)BL_FUZZ_TARGET(data, size, &err);
    return 0;
}
