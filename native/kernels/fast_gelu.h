// Branch-free float GELU (erf form) and its derivative that the compiler can vectorise: GELU
// with a rational erf (erf_rational below); its derivative with erf by Abramowitz & Stegun
// 7.1.26 (|error| <= 1.5e-7) and a polynomial exp (range reduction by ln 2, relative error
// ~2e-7), since it needs exp(-x^2/2) anyway. Used by the elementwise kernels for float32;
// double keeps std::erf / std::exp.
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

// erf(z) = z * P(z^2) / Q(z^2) on |z| <= 4 (erf(4) = 1 - 1.5e-8, so clamping is exact in
// float): a rational fit made for this file by iteratively reweighted least squares on
// erf(z)/z over [0, 4] (|error| <= 9e-8 in exact arithmetic, 3.5e-7 evaluated in float).
// About half the work of the exp-based erf_pos: no exp and one division.
inline float erf_rational(float z) {
  const float c = z < -4.0f ? -4.0f : (z > 4.0f ? 4.0f : z);
  const float u = c * c;
  const float p = 1.128378987e+00f + u * (2.070289701e-01f + u * (5.493173003e-02f + u * (4.470711108e-03f + u * (2.991392394e-04f + u * 1.903012731e-06f))));
  const float q = 1.0f + u * (5.168046951e-01f + u * (1.209646761e-01f + u * (1.638726145e-02f + u * (1.330262632e-03f + u * 3.731041943e-05f))));
  return c * p / q;
}

inline float gelu(float x) {
  return 0.5f * x * (1.0f + erf_rational(x * 0.70710678118654752440f));
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
