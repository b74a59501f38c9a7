// Vectorised float loops for the transcendental-heavy kernels (fast_gelu.h: GELU and its
// gradient, softmax pieces, binary cross-entropy with logits), compiled per ISA and chosen with
// the same run-time level as the other kernels (cpu_isa_level(): SCALPEL_ISA forces it too).
#include <cmath>
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
  }                                                                                          \
  /* Sums in 16 lanes: with one float accumulator (a reduction GCC does not vectorise) the    \
     AVX-512 build ran this loop scalar, 1.93 -> 1.11 ns per value (AVX2 intrinsics: 0.86). */ \
  ATTR void bn_gelu_sums_stash_##SUFFIX(const float* g, const float* x, int64_t n, float mean,\
                                        double* sg, double* sgx, float* a, float* d) {       \
    float s1[16] = {}, s2[16] = {};                                                          \
    int64_t i = 0;                                                                           \
    for (; i + 16 <= n; i += 16)                                                             \
      for (int j = 0; j < 16; ++j) {                                                         \
        const float xv = x[i + j], gv = g[i + j], av = fastmath::gelu(xv);                   \
        a[i + j] = av;                                                                       \
        d[i + j] = fastmath::gelu_grad(xv);                                                  \
        s1[j] += gv;                                                                         \
        s2[j] += gv * (av - mean);                                                           \
      }                                                                                      \
    for (; i < n; ++i) {                                                                     \
      a[i] = fastmath::gelu(x[i]);                                                           \
      d[i] = fastmath::gelu_grad(x[i]);                                                      \
      s1[0] += g[i];                                                                         \
      s2[0] += g[i] * (a[i] - mean);                                                         \
    }                                                                                        \
    for (int j = 0; j < 16; ++j) *sg += s1[j], *sgx += s2[j];                                \
  }

SC_GELU_LOOPS(generic, )

#define SC_BCE_LOOPS(SUFFIX, ATTR)                                                           \
  ATTR void bce_##SUFFIX(const float* x, const float* t, float pw, float* y, int64_t n) {    \
    for (int64_t i = 0; i < n; ++i) y[i] = fastmath::bce_logits(x[i], t[i], pw);             \
  }                                                                                          \
  ATTR void bce_grad_##SUFFIX(const float* g, float gs, const float* x, const float* t,     \
                              float pw, float* y, int64_t n) {                               \
    for (int64_t i = 0; i < n; ++i)                                                          \
      y[i] = (g ? g[i] : gs) * fastmath::bce_logits_grad(x[i], t[i], pw);                    \
  }

SC_BCE_LOOPS(avx512, __attribute__((target("avx512f,avx512dq,avx2,fma"))))
SC_BCE_LOOPS(generic, )

#define SC_SOFTMAX_LOOPS(SUFFIX, ATTR)                                                       \
  ATTR float max_##SUFFIX(const float* s, int64_t n) {                                       \
    float mx = s[0];                                                                         \
    for (int64_t i = 1; i < n; ++i) mx = s[i] > mx ? s[i] : mx;                              \
    return mx;                                                                               \
  }                                                                                          \
  ATTR double exp_shift_sum_##SUFFIX(float* s, int64_t n, float shift) {                     \
    float lanes[16] = {};                                                                    \
    int64_t i = 0;                                                                           \
    for (; i + 16 <= n; i += 16)                                                             \
      for (int j = 0; j < 16; ++j) lanes[j] += s[i + j] = fastmath::exp_f(s[i + j] - shift); \
    double sum = 0;                                                                          \
    for (; i < n; ++i) sum += s[i] = fastmath::exp_f(s[i] - shift);                          \
    for (float l : lanes) sum += l;                                                          \
    return sum;                                                                              \
  }                                                                                          \
  ATTR void exp_##SUFFIX(float* s, int64_t n) {                                              \
    for (int64_t i = 0; i < n; ++i) s[i] = fastmath::exp_f(s[i]);                            \
  }

SC_SOFTMAX_LOOPS(generic, )

// AVX2 forms of fastmath::gelu / gelu_grad for 8 floats. GCC does not vectorise the scalar
// formulas for 256-bit registers (the plain loop ran at ~8 ns per element on an AVX2-only EPYC,
// making GELU the largest cost of CMUNeXt inference), so the array loops use intrinsics.
#define SC_AVX2_INLINE __attribute__((target("avx2,fma"), always_inline)) inline

SC_AVX2_INLINE __m256 exp_ps256(__m256 x) {
  x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.0f)), _mm256_set1_ps(-87.0f));
  const __m256 kf = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(kf, _mm256_set1_ps(0.693145751953125f), x);
  r = _mm256_fnmadd_ps(kf, _mm256_set1_ps(1.42860682030941723212e-6f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(kf), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

// erf(z) given |z| and e = exp(-z^2) (A&S 7.1.26), the sign of z put back. 1 / (1 + 0.3275911 |z|)
// by the reciprocal estimate and one Newton step (relative error ~1e-7, below the formula's).
SC_AVX2_INLINE __m256 erf_ps256(__m256 z, __m256 az, __m256 e) {
  const __m256 d = _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), az, _mm256_set1_ps(1.0f));
  __m256 t = _mm256_rcp_ps(d);
  t = _mm256_mul_ps(t, _mm256_fnmadd_ps(d, t, _mm256_set1_ps(2.0f)));
  __m256 poly = _mm256_set1_ps(1.061405429f);
  poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(-1.453152027f));
  poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(1.421413741f));
  poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(-0.284496736f));
  poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(0.254829592f));
  poly = _mm256_mul_ps(poly, t);
  const __m256 mag = _mm256_fnmadd_ps(poly, e, _mm256_set1_ps(1.0f));
  return _mm256_or_ps(mag, _mm256_and_ps(z, _mm256_set1_ps(-0.0f)));
}

// fastmath::gelu's exp-free form; the division by the reciprocal estimate and a Newton step.
SC_AVX2_INLINE __m256 gelu_ps256(__m256 v) {
  using fastmath::kErfcA;
  using fastmath::kErfcDegree;
  const __m256 az = _mm256_min_ps(_mm256_and_ps(_mm256_mul_ps(v, _mm256_set1_ps(0.70710678118654752440f)), _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff))), _mm256_set1_ps(5.0f));
  __m256 q = _mm256_fmadd_ps(_mm256_set1_ps(kErfcA[kErfcDegree - 1]), az, _mm256_set1_ps(kErfcA[kErfcDegree - 2]));
  for (int k = kErfcDegree - 3; k >= 0; --k) q = _mm256_fmadd_ps(q, az, _mm256_set1_ps(kErfcA[k]));
  q = _mm256_mul_ps(q, az);
  for (int k = 0; k < 4; ++k) q = _mm256_fmadd_ps(q, q, _mm256_add_ps(q, q));
  const __m256 den = _mm256_add_ps(q, _mm256_set1_ps(1.0f));
  __m256 r = _mm256_rcp_ps(den);
  r = _mm256_mul_ps(r, _mm256_fnmadd_ps(den, r, _mm256_set1_ps(2.0f)));
  const __m256 t = _mm256_mul_ps(_mm256_mul_ps(v, _mm256_set1_ps(0.5f)), r);  // v Phi(-|v|)
  const __m256 neg = _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ);
  return _mm256_blendv_ps(_mm256_sub_ps(v, t), t, neg);
}

SC_AVX2_INLINE __m256 gelu_grad_ps256(__m256 v) {
  const __m256 z = _mm256_mul_ps(v, _mm256_set1_ps(0.70710678118654752440f));
  const __m256 az = _mm256_and_ps(z, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)));
  const __m256 e = exp_ps256(_mm256_mul_ps(_mm256_sub_ps(_mm256_setzero_ps(), az), az));
  const __m256 cdf = _mm256_fmadd_ps(_mm256_set1_ps(0.5f), erf_ps256(z, az, e), _mm256_set1_ps(0.5f));
  return _mm256_fmadd_ps(_mm256_mul_ps(v, e), _mm256_set1_ps(0.39894228040143267794f), cdf);
}
#define SC_AVX2 __attribute__((target("avx2,fma")))

SC_AVX2 void gelu_avx2(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(y + i, gelu_ps256(_mm256_loadu_ps(x + i)));
  }
  for (; i < n; ++i) y[i] = fastmath::gelu(x[i]);
}

// fastmath::log1p_unit for 8 values in [0, 1].
SC_AVX2_INLINE __m256 log1p_unit_ps256(__m256 e) {
  const __m256 s = _mm256_div_ps(e, _mm256_add_ps(e, _mm256_set1_ps(2.0f)));
  const __m256 s2 = _mm256_mul_ps(s, s);
  __m256 p = _mm256_set1_ps(1.0f / 13.0f);
  p = _mm256_fmadd_ps(p, s2, _mm256_set1_ps(1.0f / 11.0f));
  p = _mm256_fmadd_ps(p, s2, _mm256_set1_ps(1.0f / 9.0f));
  p = _mm256_fmadd_ps(p, s2, _mm256_set1_ps(1.0f / 7.0f));
  p = _mm256_fmadd_ps(p, s2, _mm256_set1_ps(1.0f / 5.0f));
  p = _mm256_fmadd_ps(p, s2, _mm256_set1_ps(1.0f / 3.0f));
  p = _mm256_fmadd_ps(p, s2, _mm256_set1_ps(1.0f));
  return _mm256_mul_ps(_mm256_add_ps(s, s), p);
}

SC_AVX2 void bce_avx2(const float* x, const float* t, float pw, float* y, int64_t n) {
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)), one = _mm256_set1_ps(1.0f);
  const __m256 pwm1 = _mm256_set1_ps(pw - 1.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 xv = _mm256_loadu_ps(x + i), tv = _mm256_loadu_ps(t + i);
    const __m256 ax = _mm256_and_ps(xv, absmask);
    const __m256 sp = _mm256_add_ps(log1p_unit_ps256(exp_ps256(_mm256_sub_ps(_mm256_setzero_ps(), ax))),
                                    _mm256_max_ps(_mm256_sub_ps(_mm256_setzero_ps(), xv), _mm256_setzero_ps()));
    const __m256 lw = _mm256_fmadd_ps(pwm1, tv, one);
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(lw, sp, _mm256_mul_ps(_mm256_sub_ps(one, tv), xv)));
  }
  for (; i < n; ++i) y[i] = fastmath::bce_logits(x[i], t[i], pw);
}

SC_AVX2 void bce_grad_avx2(const float* g, float gs, const float* x, const float* t, float pw, float* y, int64_t n) {
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)), one = _mm256_set1_ps(1.0f);
  const __m256 pwm1 = _mm256_set1_ps(pw - 1.0f), pwv = _mm256_set1_ps(pw);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 xv = _mm256_loadu_ps(x + i), tv = _mm256_loadu_ps(t + i);
    const __m256 e = exp_ps256(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_and_ps(xv, absmask)));
    const __m256 neg = _mm256_cmp_ps(xv, _mm256_setzero_ps(), _CMP_LT_OQ);
    const __m256 sig = _mm256_div_ps(_mm256_blendv_ps(one, e, neg), _mm256_add_ps(one, e));
    __m256 d = _mm256_fmsub_ps(_mm256_fmadd_ps(pwm1, tv, one), sig, _mm256_mul_ps(pwv, tv));
    _mm256_storeu_ps(y + i, _mm256_mul_ps(d, g ? _mm256_loadu_ps(g + i) : _mm256_set1_ps(gs)));
  }
  for (; i < n; ++i) y[i] = (g ? g[i] : gs) * fastmath::bce_logits_grad(x[i], t[i], pw);
}

// The scalar exp_f has range clamps GCC leaves as branches at 256 bits: ~15 cycles per value,
// which made the softmax nearly all of the decay attention's time.
SC_AVX2 float max_avx2(const float* s, int64_t n) {
  if (n < 8) return max_generic(s, n);
  __m256 m = _mm256_loadu_ps(s);
  int64_t i = 8;
  for (; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(s + i));
  alignas(32) float t[8];
  _mm256_store_ps(t, m);
  float mx = t[0];
  for (int j = 1; j < 8; ++j) mx = t[j] > mx ? t[j] : mx;
  for (; i < n; ++i) mx = s[i] > mx ? s[i] : mx;
  return mx;
}

SC_AVX2 double exp_shift_sum_avx2(float* s, int64_t n, float shift) {
  const __m256 sh = _mm256_set1_ps(shift);
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = exp_ps256(_mm256_sub_ps(_mm256_loadu_ps(s + i), sh));
    _mm256_storeu_ps(s + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  alignas(32) float t[8];
  _mm256_store_ps(t, acc);
  double sum = 0;
  for (float v : t) sum += v;
  for (; i < n; ++i) sum += s[i] = fastmath::exp_f(s[i] - shift);
  return sum;
}

SC_AVX2 void exp_avx2(float* s, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(s + i, exp_ps256(_mm256_loadu_ps(s + i)));
  for (; i < n; ++i) s[i] = fastmath::exp_f(s[i]);
}

// AVX-512 forms of the softmax loops. The generic loops above compiled for AVX-512 stayed
// scalar (GCC vectorises neither the float max reduction nor exp_f's int conversion there): 2.5x
// slower than the AVX2 intrinsics, the largest cost of NExNet's attention (softmax over
// 224-wide rows).
#define SC_AVX512 __attribute__((target("avx512f,avx512dq,avx2,fma")))
SC_AVX512 __attribute__((always_inline)) inline __m512 exp_ps512(__m512 x) {
  x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.0f)), _mm512_set1_ps(-87.0f));
  const __m512 kf = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(kf, _mm512_set1_ps(0.693145751953125f), x);
  r = _mm512_fnmadd_ps(kf, _mm512_set1_ps(1.42860682030941723212e-6f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  // p 2^kf in one instruction (kf in [-126, 127] after the clamp: the same product as building
  // 2^kf's exponent bits and multiplying, which took four).
  return _mm512_scalef_ps(p, kf);
}

SC_AVX512 float max_avx512(const float* s, int64_t n) {
  if (n < 16) return max_avx2(s, n);
  __m512 m = _mm512_loadu_ps(s);
  int64_t i = 16;
  for (; i + 16 <= n; i += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(s + i));
  float mx = _mm512_reduce_max_ps(m);
  for (; i < n; ++i) mx = s[i] > mx ? s[i] : mx;
  return mx;
}

SC_AVX512 double exp_shift_sum_avx512(float* s, int64_t n, float shift) {
  const __m512 sh = _mm512_set1_ps(shift);
  __m512 acc = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 e = exp_ps512(_mm512_sub_ps(_mm512_loadu_ps(s + i), sh));
    _mm512_storeu_ps(s + i, e);
    acc = _mm512_add_ps(acc, e);
  }
  alignas(64) float t[16];
  _mm512_store_ps(t, acc);
  double sum = 0;
  for (float v : t) sum += v;
  for (; i < n; ++i) sum += s[i] = fastmath::exp_f(s[i] - shift);
  return sum;
}

SC_AVX512 void exp_avx512(float* s, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(s + i, exp_ps512(_mm512_loadu_ps(s + i)));
  for (; i < n; ++i) s[i] = fastmath::exp_f(s[i]);
}

SC_AVX2 void gelu_grad_avx2(const float* g, const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(g + i), gelu_grad_ps256(_mm256_loadu_ps(x + i))));
  }
  for (; i < n; ++i) y[i] = g[i] * fastmath::gelu_grad(x[i]);
}

// GELU and its derivative of 8 values, sharing exp and erf (7.1.26): with cdf = (1 + erf(v /
// sqrt 2)) / 2, gelu = v cdf and gelu' = cdf + v exp(-v^2 / 2) / sqrt(2 pi). (This gelu and the
// forward's exp-free gelu_ps256 differ by under 1e-6.)
SC_AVX2_INLINE void gelu_and_grad_ps256(__m256 v, __m256& a, __m256& d) {
  const __m256 z = _mm256_mul_ps(v, _mm256_set1_ps(0.70710678118654752440f));
  const __m256 az = _mm256_and_ps(z, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)));
  const __m256 e = exp_ps256(_mm256_mul_ps(_mm256_sub_ps(_mm256_setzero_ps(), az), az));
  const __m256 cdf = _mm256_fmadd_ps(_mm256_set1_ps(0.5f), erf_ps256(z, az, e), _mm256_set1_ps(0.5f));
  a = _mm256_mul_ps(v, cdf);
  d = _mm256_fmadd_ps(_mm256_mul_ps(v, e), _mm256_set1_ps(0.39894228040143267794f), cdf);
}

// AVX-512 forms, 16 floats, the tails under a mask (so that every element of a plane gets the
// same formula wherever a call's blocks start: batch norm's backward recomputes the GELU its
// forward normalised, and a difference of an ulp there is magnified by 1 / std on nearly constant
// channels). GELU is fastmath::gelu's exp-free form with 1 / (1 + Q) by the 14-bit reciprocal
// estimate and a Newton step (the division was half the work; within an ulp of it); its
// derivative reuses that Phi(-|x|) and one exp: gelu' = Phi(x) + x exp(-x^2 / 2) / sqrt(2 pi).
// Batch norm's backward needs both for every value: with the erf of 7.1.26 and a second
// division for the derivative, GELU was ~60 % of its time at CMUNeXt's shapes.
#define SC_AVX512_INLINE __attribute__((target("avx512f,avx512dq,avx2,fma"), always_inline)) inline

// Phi(-|v|) = 1 / (2 (1 + Q)) (fastmath::gelu's Q).
SC_AVX512_INLINE __m512 phi_neg_abs_ps512(__m512 v) {
  using fastmath::kErfcA;
  using fastmath::kErfcDegree;
  const __m512 az = _mm512_min_ps(_mm512_abs_ps(_mm512_mul_ps(v, _mm512_set1_ps(0.70710678118654752440f))), _mm512_set1_ps(5.0f));
  __m512 q = _mm512_fmadd_ps(_mm512_set1_ps(kErfcA[kErfcDegree - 1]), az, _mm512_set1_ps(kErfcA[kErfcDegree - 2]));
  for (int k = kErfcDegree - 3; k >= 0; --k) q = _mm512_fmadd_ps(q, az, _mm512_set1_ps(kErfcA[k]));
  q = _mm512_mul_ps(q, az);
  for (int k = 0; k < 4; ++k) q = _mm512_fmadd_ps(q, q, _mm512_add_ps(q, q));
  const __m512 den = _mm512_add_ps(q, _mm512_set1_ps(1.0f));
  __m512 r = _mm512_rcp14_ps(den);
  r = _mm512_mul_ps(r, _mm512_fnmadd_ps(den, r, _mm512_set1_ps(2.0f)));
  return _mm512_mul_ps(r, _mm512_set1_ps(0.5f));
}

// gelu(v) = v - v Phi(-|v|) for v >= 0, v Phi(-|v|) below.
SC_AVX512_INLINE __m512 gelu_from_ps512(__m512 v, __m512 half, __mmask16 neg) {
  const __m512 t = _mm512_mul_ps(v, half);
  return _mm512_mask_blend_ps(neg, _mm512_sub_ps(v, t), t);
}

SC_AVX512_INLINE __m512 gelu_ps512(__m512 v) {
  return gelu_from_ps512(v, phi_neg_abs_ps512(v), _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ));
}

SC_AVX512_INLINE void gelu_and_grad_ps512(__m512 v, __m512& a, __m512& d) {
  const __m512 half = phi_neg_abs_ps512(v);
  const __mmask16 neg = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ);
  a = gelu_from_ps512(v, half, neg);
  const __m512 cdf = _mm512_mask_blend_ps(neg, _mm512_sub_ps(_mm512_set1_ps(1.0f), half), half);
  const __m512 e = exp_ps512(_mm512_mul_ps(_mm512_mul_ps(v, v), _mm512_set1_ps(-0.5f)));
  d = _mm512_fmadd_ps(_mm512_mul_ps(v, e), _mm512_set1_ps(0.39894228040143267794f), cdf);
}

// The lanes of a 16-float step with `left` values still to go.
inline __mmask16 lanes_left(int64_t left) { return left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1u); }

SC_AVX512 void gelu_avx512(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = lanes_left(n - i);
    _mm512_mask_storeu_ps(y + i, m, gelu_ps512(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

SC_AVX512 void gelu_grad_avx512(const float* g, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = lanes_left(n - i);
    __m512 a, d;
    gelu_and_grad_ps512(_mm512_maskz_loadu_ps(m, x + i), a, d);
    _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, g + i), d));
  }
}

SC_AVX512 void bn_gelu_sums_stash_avx512(const float* g, const float* x, int64_t n, float mean, double* sg, double* sgx, float* ap, float* dp) {
  __m512 s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps();
  const __m512 mv = _mm512_set1_ps(mean);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = lanes_left(n - i);
    const __m512 gv = _mm512_maskz_loadu_ps(m, g + i);  // zero past the tail: adds nothing
    __m512 a, d;
    gelu_and_grad_ps512(_mm512_maskz_loadu_ps(m, x + i), a, d);
    _mm512_mask_storeu_ps(ap + i, m, a);
    _mm512_mask_storeu_ps(dp + i, m, d);
    s1 = _mm512_add_ps(s1, gv);
    s2 = _mm512_fmadd_ps(gv, _mm512_sub_ps(a, mv), s2);
  }
  alignas(64) float t1[16], t2[16];
  _mm512_store_ps(t1, s1);
  _mm512_store_ps(t2, s2);
  for (int j = 0; j < 16; ++j) *sg += t1[j], *sgx += t2[j];
}

SC_AVX2 double hsum_ps256(__m256 v) {
  alignas(32) float t[8];
  _mm256_store_ps(t, v);
  double s = 0;
  for (float f : t) s += f;
  return s;
}

SC_AVX2 void bn_gelu_sums_stash_avx2(const float* g, const float* x, int64_t n, float mean, double* sg, double* sgx, float* ap, float* dp) {
  __m256 s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps();
  const __m256 m = _mm256_set1_ps(mean);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 gv = _mm256_loadu_ps(g + i);
    __m256 a, d;
    gelu_and_grad_ps256(_mm256_loadu_ps(x + i), a, d);
    _mm256_storeu_ps(ap + i, a);
    _mm256_storeu_ps(dp + i, d);
    s1 = _mm256_add_ps(s1, gv);
    s2 = _mm256_fmadd_ps(gv, _mm256_sub_ps(a, m), s2);
  }
  double t1 = hsum_ps256(s1), t2 = hsum_ps256(s2);
  for (; i < n; ++i) {
    ap[i] = fastmath::gelu(x[i]);
    dp[i] = fastmath::gelu_grad(x[i]);
    t1 += g[i];
    t2 += g[i] * (ap[i] - mean);
  }
  *sg += t1;
  *sgx += t2;
}

}  // namespace

void bn_gelu_sums_stash_f32(const float* g, const float* x, int64_t n, float mean, double* sg, double* sgx, float* a, float* d) {
  const int l = cpu_isa_level();
  if (l >= 2) return bn_gelu_sums_stash_avx512(g, x, n, mean, sg, sgx, a, d);
  if (l == 1) return bn_gelu_sums_stash_avx2(g, x, n, mean, sg, sgx, a, d);
  bn_gelu_sums_stash_generic(g, x, n, mean, sg, sgx, a, d);
}

void bce_logits_f32_array(const float* x, const float* t, float pw, float* y, int64_t n) {
  const int l = cpu_isa_level();
  if (l >= 2) return bce_avx512(x, t, pw, y, n);
  if (l == 1) return bce_avx2(x, t, pw, y, n);
  bce_generic(x, t, pw, y, n);
}

void bce_logits_grad_f32_array(const float* g, float gs, const float* x, const float* t, float pw, float* y, int64_t n) {
  const int l = cpu_isa_level();
  if (l >= 2) return bce_grad_avx512(g, gs, x, t, pw, y, n);
  if (l == 1) return bce_grad_avx2(g, gs, x, t, pw, y, n);
  bce_grad_generic(g, gs, x, t, pw, y, n);
}

void gelu_f32_array(const float* x, float* y, int64_t n) {
  const int l = cpu_isa_level();
  if (l >= 2) return gelu_avx512(x, y, n);
  if (l == 1) return gelu_avx2(x, y, n);
  gelu_generic(x, y, n);
}

void gelu_grad_f32_array(const float* g, const float* x, float* y, int64_t n) {
  const int l = cpu_isa_level();
  if (l >= 2) return gelu_grad_avx512(g, x, y, n);
  if (l == 1) return gelu_grad_avx2(g, x, y, n);
  gelu_grad_generic(g, x, y, n);
}

double softmax_f32_array(float* s, int64_t n) {
  const int l = cpu_isa_level();
  const float mx = l >= 2 ? max_avx512(s, n) : l == 1 ? max_avx2(s, n) : max_generic(s, n);
  const double sum = exp_shift_sum_f32_array(s, n, mx);
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) s[i] *= inv;
  return static_cast<double>(mx) + std::log(sum);
}

double exp_shift_sum_f32_array(float* s, int64_t n, float shift) {
  const int l = cpu_isa_level();
  if (l >= 2) return exp_shift_sum_avx512(s, n, shift);
  if (l == 1) return exp_shift_sum_avx2(s, n, shift);
  return exp_shift_sum_generic(s, n, shift);
}

void exp_f32_array(float* s, int64_t n) {
  const int l = cpu_isa_level();
  if (l >= 2) return exp_avx512(s, n);
  if (l == 1) return exp_avx2(s, n);
  exp_generic(s, n);
}

}  // namespace sc
