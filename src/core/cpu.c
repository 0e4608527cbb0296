/* CPU feature detection for the kernel dispatcher. __builtin_cpu_supports reads CPUID and, for
 * AVX/AVX-512, also checks that the OS saves the wider registers (XCR0), so a level reported here
 * is safe to run. */
#include "bitllm/kernels.h"

bl_isa bl_cpu_best_isa(void) {
    __builtin_cpu_init();
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    /* The AVX-512 kernels use F (permutes, masks), BW/VL/DQ (byte masks, 256-bit forms). */
    if (avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        return BL_ISA_AVX512;
    return avx2 ? BL_ISA_AVX2 : BL_ISA_REF;
}
