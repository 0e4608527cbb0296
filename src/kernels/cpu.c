/* CPU features and ISA levels for the kernel dispatcher. __builtin_cpu_supports reads CPUID and,
 * for AVX/AVX-512, also checks that the OS saves the wider registers (XCR0), so a level reported
 * here is safe to run. The best level and the default level are properties of the CPU and of the
 * environment at first use; they are computed once and never change afterwards. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/half_kernels.h"
#include "kernels/qmat_kernels.h"
#include "kernels/sign_kernels.h"

static bl_isa detect_best(void) {
    __builtin_cpu_init();
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    /* The AVX-512 kernels use F (permutes, masks), BW/VL/DQ (byte masks, 256-bit forms). */
    if (avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        return BL_ISA_AVX512;
    return avx2 ? BL_ISA_AVX2 : BL_ISA_REF;
}

/* -1 until computed; racing first uses all compute the same value. */
static atomic_int g_best = -1, g_default = -1;

bl_isa bl_cpu_best_isa(void) {
    int v = atomic_load_explicit(&g_best, memory_order_relaxed);
    if (v < 0) {
        v = (int)detect_best();
        atomic_store_explicit(&g_best, v, memory_order_relaxed);
    }
    return (bl_isa)v;
}

static bl_isa clamp_to_cpu(bl_isa isa) {
    const bl_isa best = bl_cpu_best_isa();
    if ((int)isa < (int)BL_ISA_REF) return BL_ISA_REF;
    return (int)isa > (int)best ? best : isa;
}

bl_isa bl_isa_clamp(bl_isa isa) { return isa == BL_ISA_AUTO ? bl_default_isa() : clamp_to_cpu(isa); }

bool bl_isa_from_name(const char *name, bl_isa *out) {
    static const struct { const char *name; bl_isa isa; } names[] = {
        {"auto", BL_ISA_AUTO}, {"ref", BL_ISA_REF}, {"avx2", BL_ISA_AVX2}, {"avx512", BL_ISA_AVX512}};
    for (size_t i = 0; name && i < sizeof names / sizeof names[0]; i++)
        if (strcmp(name, names[i].name) == 0) {
            *out = names[i].isa;
            return true;
        }
    return false;
}

const char *bl_isa_name(bl_isa isa) {
    switch (isa) {
    case BL_ISA_AUTO: return "auto";
    case BL_ISA_REF: return "ref";
    case BL_ISA_AVX2: return "avx2";
    case BL_ISA_AVX512: return "avx512";
    }
    return "unknown";
}

bl_isa bl_default_isa(void) {
    int v = atomic_load_explicit(&g_default, memory_order_relaxed);
    if (v < 0) {
        bl_isa isa;
        v = (int)(bl_isa_from_name(getenv("BITLLM_ISA"), &isa) && isa != BL_ISA_AUTO
                      ? clamp_to_cpu(isa)
                      : bl_cpu_best_isa());
        atomic_store_explicit(&g_default, v, memory_order_relaxed);
    }
    return (bl_isa)v;
}

bool bl_cpu_has_gfni(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("gfni");
}

bool bl_cpu_has_vbmi_vnni(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512vnni");
}

bool bl_cpu_has_vnni(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vnni");
}

bool bl_cpu_is_intel(void) {
    __builtin_cpu_init();
    return __builtin_cpu_is("intel");
}
