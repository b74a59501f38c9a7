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
#include <immintrin.h>
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

#if defined(__x86_64__) || defined(__i386__)
// 16 rows of 16 floats to 16 columns (r[i] row i on entry, column i on return): pairs, then
// quads within 128-bit lanes, then lanes. Used to pack pixel-major panels (conv_wgrad.cc) and
// GEMM panels (gemm.cc).
SC_T512 SC_AI void transpose16(__m512 (&r)[16]) {
  __m512 t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 2]);
    const __m512d c = _mm512_castps_pd(t[4 * i + 1]), d = _mm512_castps_pd(t[4 * i + 3]);
    u[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
    u[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
    u[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
    u[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
  }
  // u[4g + j], 128-bit lane q: rows 4g..4g+3 of column 4q + j.
  for (int j = 0; j < 4; ++j) {
    const __m512 lo = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x44), hi = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xEE);
    const __m512 lo2 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x44), hi2 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xEE);
    r[j] = _mm512_shuffle_f32x4(lo, lo2, 0x88);
    r[4 + j] = _mm512_shuffle_f32x4(lo, lo2, 0xDD);
    r[8 + j] = _mm512_shuffle_f32x4(hi, hi2, 0x88);
    r[12 + j] = _mm512_shuffle_f32x4(hi, hi2, 0xDD);
  }
}
#endif

}  // namespace sc
