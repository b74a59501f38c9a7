// Branch-free float GELU (erf form) and its derivative that the compiler can vectorise:
// erf by Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7) with a polynomial exp (range reduction
// by ln 2, relative error ~2e-7). Used by the elementwise kernels for float32; double keeps
// std::erf / std::exp.
#pragma once
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

}  // namespace fastmath
}  // namespace sc

namespace sc {
// Contiguous float loops, vectorised for the CPU's ISA (fast_gelu.cc).
void gelu_f32_array(const float* x, float* y, int64_t n);
void gelu_grad_f32_array(const float* g, const float* x, float* y, int64_t n);
}  // namespace sc
