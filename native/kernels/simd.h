// Shared by the hand-vectorised convolution kernels: GCC vector types of L floats, forced
// inlining, and the target attributes of the per-ISA variants (each kernel is compiled for every
// level and picked at run time with cpu_isa_level(), never by -march).
#pragma once
#include <cstdint>

#define SC_AI __attribute__((always_inline)) inline
#if defined(__x86_64__) || defined(__i386__)
#define SC_T512 __attribute__((target("avx512f,avx512dq,avx2,fma")))
#define SC_T256 __attribute__((target("avx2,fma")))
#endif

namespace sc {

// L floats / int32s; unaligned (scratch buffers and output planes are only float-aligned).
template <int L>
struct Vec {
  typedef float type __attribute__((vector_size(sizeof(float) * L), aligned(sizeof(float))));
  typedef int32_t itype __attribute__((vector_size(sizeof(float) * L)));
};

}  // namespace sc
