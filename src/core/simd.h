/* Loop vectorization requests. GCC at -O2 vectorizes a loop with `omp simd` (-fopenmp) when told
 * to, and not by itself; clang vectorizes such loops unasked, and in instrumented builds (the
 * fuzzing build) turns a request it cannot honour into an error (-Wpass-failed). So the request
 * is made to GCC only. A reduction (BL_SIMD_SUM) lets the compiler sum in SIMD lanes: a fixed
 * order for one build, the same on every thread. */
#ifndef BITLLM_CORE_SIMD_H
#define BITLLM_CORE_SIMD_H

#ifdef __clang__
#define BL_SIMD
#define BL_SIMD_SUM(var)
#else
#define BL_SIMD _Pragma("omp simd")
#define BL_SIMD_SUM(var) _Pragma(BL_SIMD_STR(omp simd reduction(+ : var)))
#define BL_SIMD_STR(x) #x
#endif

#endif
