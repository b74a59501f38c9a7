// Branch-free float GELU and its derivative that the compiler can vectorise: the forward by an
// exp-free erfc (below), the derivative with erf by Abramowitz & Stegun 7.1.26 (|error| <=
// 1.5e-7) and a polynomial exp (range reduction by ln 2, relative error ~2e-7). Used by the
// elementwise kernels for float32; double keeps std::erf / std::exp.
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

// GELU's forward alone needs no exp: Phi(x) from erfc(z) = 1 / (1 + q(z))^16, z = |x| / sqrt 2,
// q(z) = a1 z + ... + a8 z^8 (the form of Abramowitz & Stegun 7.1.28, refitted here to degree 8;
// in float64 the fit is within 4e-9 of GELU). Phi = 1 - erfc / 2 for x >= 0 and erfc / 2 below 0,
// so the negative tail keeps its relative accuracy. The power is taken on q, not on 1 + q
// ((1 + q)^2 = 1 + q (2 + q)), up to Q = (1 + q)^16 - 1, and t = x Phi(-|x|) = x / (2 (1 + Q)):
// q never passes through a float 1 + q that would round away its low bits (GELU's slope near 0,
// which a batch norm over nearly equal values magnifies: gradients of CMUNeXt-S's stem were 5x
// further from float64 with 1 + q rounded first). About two thirds of the erf-by-exp form's
// work (7.1.26 below, which the derivative keeps, since it needs exp(-x^2 / 2) anyway). z is
// clamped at 5 (erfc(5) < 2e-12), which keeps Q finite.
constexpr int kErfcDegree = 8;
constexpr float kErfcA[kErfcDegree] = {7.0523738191e-02f, 4.2274662535e-02f, 9.2939676046e-03f, 1.2859426066e-04f,
                                       2.6825385229e-04f, 7.1316545488e-05f, -1.6355605114e-05f, 2.9761581744e-06f};

inline float gelu(float x) {
  float az = (x < 0 ? -x : x) * 0.70710678118654752440f;
  az = az > 5.0f ? 5.0f : az;
  float q = kErfcA[kErfcDegree - 1];
  for (int k = kErfcDegree - 2; k >= 0; --k) q = q * az + kErfcA[k];
  q *= az;
  for (int k = 0; k < 4; ++k) q = q * q + (q + q);
  const float t = 0.5f * x / (1.0f + q);  // x Phi(-|x|)
  return x < 0 ? t : x - t;
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
  const VI zi = (VI)(x * 0.70710678118654752440f);
  VF az = (VF)(zi & 0x7fffffff);
  az = az > 5.0f ? az * 0.0f + 5.0f : az;
  VF q = az * kErfcA[kErfcDegree - 1] + kErfcA[kErfcDegree - 2];
  for (int k = kErfcDegree - 3; k >= 0; --k) q = q * az + kErfcA[k];
  q = q * az;
  for (int k = 0; k < 4; ++k) q = q * q + (q + q);
  const VF t = x * 0.5f / (q + 1.0f);
  return x < 0.0f ? t : x - t;
}

// log(1 + e) for e in [0, 1] (binary cross-entropy's softplus of -|x|, e = exp(-|x|)): with
// s = e / (2 + e) in [0, 1/3], log(1 + e) = 2 atanh(s) = 2 s (1 + s^2/3 + s^4/5 + ...), seven
// terms (the next is below 2e-8 of the sum); no cancellation as e -> 0.
inline float log1p_unit(float e) {
  const float s = e / (2.0f + e), s2 = s * s;
  float p = 1.0f / 13.0f;
  p = p * s2 + 1.0f / 11.0f;
  p = p * s2 + 1.0f / 9.0f;
  p = p * s2 + 1.0f / 7.0f;
  p = p * s2 + 1.0f / 5.0f;
  p = p * s2 + 1.0f / 3.0f;
  p = p * s2 + 1.0f;
  return 2.0f * s * p;
}

// Binary cross-entropy with logits and its derivative (losses.cc has the formulas), float32.
inline float bce_logits(float x, float t, float pw) {
  const float ax = x < 0 ? -x : x;
  const float lw = 1.0f + (pw - 1.0f) * t;
  return (1.0f - t) * x + lw * (log1p_unit(exp_f(-ax)) + (x < 0 ? -x : 0.0f));
}
inline float bce_logits_grad(float x, float t, float pw) {
  const float e = exp_f(x < 0 ? x : -x);
  const float sig = (x < 0 ? e : 1.0f) / (1.0f + e);
  return (1.0f + (pw - 1.0f) * t) * sig - pw * t;
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
// Binary cross-entropy with logits over contiguous float arrays with a scalar pos_weight:
// y = bce(x, t); and y = g * dbce/dx (g == nullptr: the same gradient gs for every value, as a
// mean or sum reduction hands back).
void bce_logits_f32_array(const float* x, const float* t, float pw, float* y, int64_t n);
void bce_logits_grad_f32_array(const float* g, float gs, const float* x, const float* t, float pw, float* y, int64_t n);
// Batch-norm backward with GELU before it (norm.cc), over a run of at most a few hundred values:
// the sums of g and g (gelu(x) - mean) (float partial sums, added into the doubles), storing
// a[i] = gelu(x[i]) and d[i] = gelu'(x[i]) (one shared exp / erf) for the dx pass, which then
// needs no transcendental: dx = (ta g + tk a + tc) d.
void bn_gelu_sums_stash_f32(const float* g, const float* x, int64_t n, float mean, double* sg, double* sgx, float* a, float* d);
}  // namespace sc
