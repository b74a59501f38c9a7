// Shared by the hand-vectorised convolution kernels: GCC vector types of L floats, forced
// inlining, the target attributes of the per-ISA variants (each kernel is compiled for every
// level and picked at run time with cpu_isa_level(), never by -march), and the per-thread
// buffers their chunk copies go to.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

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

// A thread's buffer of at least n floats in slot 0 or 1; grown, never shrunk, shared by the
// kernels that copy chunks of their operands (one runs at a time on a thread).
inline float* thread_scratch(int slot, size_t n) {
  thread_local std::vector<float> bufs[2];
  std::vector<float>& v = bufs[slot];
  if (v.size() < n) v.resize(n);
  return v.data();
}

// Floats per row of a copied buffer: whole cache lines, an odd number of them, so that rows fall
// in different cache sets (rows a power of two apart, as 128 x 128 planes are, share a few).
inline int64_t odd_line_pitch(int64_t floats) {
  int64_t lines = (floats + 15) / 16;
  if (lines % 2 == 0) ++lines;
  return lines * 16;
}

}  // namespace sc
