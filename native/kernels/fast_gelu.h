// Branch-free float GELU (erf form) and its derivative that the compiler can vectorise:
// erf by Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7) with a polynomial exp (range reduction
// by ln 2, relative error ~2e-7). Used by the elementwise kernels for float32; double keeps
// std::erf / std::exp.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace sc {
namespace fastmath {

inline float exp_f(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float kf = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest
  const float r = (x - kf * 0.693145751953125f) - kf * 1.42860682030941723212e-6f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(kf) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// erf(x) for x >= 0 given e = exp(-x*x).
inline float erf_pos(float ax, float e) {
  const float t = 1.0f / (1.0f + 0.3275911f * ax);
  const float poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
  return 1.0f - poly * e;
}

inline float gelu(float x) {
  const float z = x * 0.70710678118654752440f;
  const float az = z < 0 ? -z : z;
  const float e = erf_pos(az, exp_f(-az * az));
  const float erfz = z < 0 ? -e : e;
  return 0.5f * x * (1.0f + erfz);
}

inline float gelu_grad(float x) {
  const float z = x * 0.70710678118654752440f;
  const float az = z < 0 ? -z : z;
  const float ex = exp_f(-az * az);  // = exp(-x^2 / 2)
  const float e = erf_pos(az, ex);
  const float cdf = 0.5f * (1.0f + (z < 0 ? -e : e));
  return cdf + x * ex * 0.39894228040143267794f;
}

// The same GELU on a GCC vector of floats (VF) with its same-sized int vector (VI), using only
// vector-extension arithmetic: inlined into a kernel compiled for AVX2, AVX-512 or the baseline,
// it becomes that ISA's instructions, so an epilogue can apply it to accumulators in registers.
// Bits are reinterpreted by vector casts ((VI) v), which GCC defines as such; reference casts
// would break strict aliasing (GCC warned the values read as uninitialised).
template <typename VF, typename VI>
__attribute__((always_inline)) inline VF gelu_vec(VF x) {
  const VF z = x * 0.70710678118654752440f;
  const VI zi = (VI)(z);
  const VI azi = zi & 0x7fffffff;
  const VF az = (VF)(azi);
  VF a = -(az * az);
  a = a < -87.0f ? a * 0.0f - 87.0f : a;  // exp(-87) is below float's normal range: e = 0
  const VF kf = (a * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const VF r = (a - kf * 0.693145751953125f) - kf * 1.42860682030941723212e-6f;
  VF p = r * 1.9875691500e-4f + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const VI bits = (__builtin_convertvector(kf, VI) + 127) << 23;
  const VF e = p * (VF)(bits);
  const VF t = 1.0f / (az * 0.3275911f + 1.0f);
  const VF poly = t * (t * (t * (t * (t * 1.061405429f - 1.453152027f) + 1.421413741f) - 0.284496736f) + 0.254829592f);
  const VF mag = 1.0f - poly * e;
  const VI erfi = (VI)(mag) | (zi & static_cast<int32_t>(0x80000000u));
  const VF hx = x * 0.5f;
  return hx * (VF)(erfi) + hx;
}

// double keeps the exact erf form.
inline double gelu_exact(double x) { return 0.5 * x * (1.0 + std::erf(x * 0.70710678118654752440)); }
inline double gelu_grad_exact(double x) {
  const double cdf = 0.5 * (1.0 + std::erf(x * 0.70710678118654752440));
  return cdf + x * std::exp(-0.5 * x * x) * 0.39894228040143267794;
}

}  // namespace fastmath
}  // namespace sc

namespace sc {
// Contiguous float loops, vectorised for the CPU's ISA (fast_gelu.cc).
void gelu_f32_array(const float* x, float* y, int64_t n);
// Softmax pieces (decay attention, scaled dot-product attention), with the polynomial exp
// (relative error ~2e-7): s[i] = exp(s[i] - shift) in place returning the sum of the results
// (float lanes, summed in double at the end); s[i] = exp(s[i]) in place; and the softmax of a
// row in place (its maximum subtracted first), returning the row's log-sum-exp.
double exp_shift_sum_f32_array(float* s, int64_t n, float shift);
void exp_f32_array(float* s, int64_t n);
double softmax_f32_array(float* s, int64_t n);
void gelu_grad_f32_array(const float* g, const float* x, float* y, int64_t n);
// Batch-norm backward with GELU before it (norm.cc), over a run of at most a few hundred values:
// the sums of g and g (gelu(x) - mean) (float partial sums, added into the doubles), storing
// a[i] = gelu(x[i]) and d[i] = gelu'(x[i]) (one shared exp / erf) for the dx pass, which then
// needs no transcendental: dx = (ta g + tk a + tc) d.
void bn_gelu_sums_stash_f32(const float* g, const float* x, int64_t n, float mean, double* sg, double* sgx, float* a, float* d);
}  // namespace sc
