// Vectorised float GELU / GELU-gradient loops (fast_gelu.h), compiled per ISA and chosen with
// the same run-time level as the other kernels (cpu_isa_level(): SCALPEL_ISA forces it too).
#include <cstdint>
#include <immintrin.h>

#include "fast_gelu.h"
#include "gemm.h"

namespace sc {
namespace {

#define SC_GELU_LOOPS(SUFFIX, ATTR)                                                          \
  ATTR void gelu_##SUFFIX(const float* x, float* y, int64_t n) {                             \
    for (int64_t i = 0; i < n; ++i) y[i] = fastmath::gelu(x[i]);                             \
  }                                                                                          \
  ATTR void gelu_grad_##SUFFIX(const float* g, const float* x, float* y, int64_t n) {        \
    for (int64_t i = 0; i < n; ++i) y[i] = g[i] * fastmath::gelu_grad(x[i]);                 \
  }

SC_GELU_LOOPS(avx512, __attribute__((target("avx512f,avx512dq,avx2,fma"))))
SC_GELU_LOOPS(generic, )

#define SC_AVX2 __attribute__((target("avx2,fma")))

SC_AVX2 void gelu_avx2(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(y + i, fastmath::gelu_ps256(_mm256_loadu_ps(x + i)));
  }
  for (; i < n; ++i) y[i] = fastmath::gelu(x[i]);
}

SC_AVX2 void gelu_x8_avx2(float* t) { _mm256_storeu_ps(t, fastmath::gelu_ps256(_mm256_loadu_ps(t))); }

SC_AVX2 void gelu_grad_avx2(const float* g, const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(g + i), fastmath::gelu_grad_ps256(_mm256_loadu_ps(x + i))));
  }
  for (; i < n; ++i) y[i] = g[i] * fastmath::gelu_grad(x[i]);
}

}  // namespace

void gelu_f32_array(const float* x, float* y, int64_t n) {
  const int l = cpu_isa_level();
  if (l >= 2) return gelu_avx512(x, y, n);
  if (l == 1) return gelu_avx2(x, y, n);
  gelu_generic(x, y, n);
}

#if defined(__x86_64__) || defined(__i386__)
void gelu_x8(float* t) { gelu_x8_avx2(t); }
#endif

void gelu_grad_f32_array(const float* g, const float* x, float* y, int64_t n) {
  const int l = cpu_isa_level();
  if (l >= 2) return gelu_grad_avx512(g, x, y, n);
  if (l == 1) return gelu_grad_avx2(g, x, y, n);
  gelu_grad_generic(g, x, y, n);
}

}  // namespace sc
