// Batch normalisation (per channel of [N, C, *]) and layer normalisation (over trailing
// dims), each with a single-pass backward kernel that gives every gradient at once. Sums
// accumulate in double so float32 statistics stay accurate on large batches.
#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "../core/kernel.h"
#include "../core/parallel.h"
#include "fast_gelu.h"
#include "norm_params.h"

namespace sc {
namespace {

using norm::Opt;
using norm::optional_inputs;

// ---- batch norm ---------------------------------------------------------------------------

// Reductions over a contiguous run: 16 independent lanes of T per block of 512 elements (so
// the compiler vectorises them), each block's total added into a double.
constexpr int kLanes = 16;
constexpr int64_t kBlock = 512;

// Mean and sum of squared deviations of a channel (or row) fed a block at a time, in one pass
// over memory: each block's sum (float lanes, a double per block) and its squared deviations
// from its own float mean are taken while the block is in L1, and blocks are merged exactly
// (Chan et al.: the deviation of the block's mean from the running mean carries the rest), so
// there is no second pass over the channel for the variance and no cancellation for large
// means.
struct Moments {
  double n = 0, mean = 0, m2 = 0;

  template <typename T>
  void add(const T* p, int64_t len) {
    if (len <= 0) return;
    T acc[kLanes] = {};
    int64_t i = 0;
    for (; i + kLanes <= len; i += kLanes)
      for (int j = 0; j < kLanes; ++j) acc[j] += p[i + j];
    double s = 0;
    for (int64_t k = i; k < len; ++k) s += p[k];
    for (int j = 0; j < kLanes; ++j) s += acc[j];
    const T m = static_cast<T>(s / len);
    T sq[kLanes] = {};
    i = 0;
    for (; i + kLanes <= len; i += kLanes)
      for (int j = 0; j < kLanes; ++j) { const T d = p[i + j] - m; sq[j] += d * d; }
    double q = 0;
    for (int64_t k = i; k < len; ++k) { const double d = p[k] - m; q += d * d; }
    for (int j = 0; j < kLanes; ++j) q += sq[j];
    // About the block's exact mean b rather than its float rounding m.
    const double b = s / len, off = b - m;
    const double bm2 = std::max(0.0, q - len * off * off);
    const double nn = n + len, delta = b - mean;
    mean += delta * (len / nn);
    m2 += bm2 + delta * delta * (n * len / nn);
    n = nn;
  }
  // add() over a run of any length, kBlock values at a time.
  template <typename T>
  void add_run(const T* p, int64_t len) {
    for (int64_t b = 0; b < len; b += kBlock) add(p + b, std::min(kBlock, len - b));
  }
};

template <typename T>
void sum_g_gx_run(const T* g, const T* x, int64_t n, T m, double& sg, double& sgx) {
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t e = std::min(n, b + kBlock);
    // Two loops over the block (it is in L1 for the second): with both sums in one loop GCC
    // vectorised the pair of lane arrays with shuffles and spills, and this pass took three
    // times the dx pass.
    T a1[kLanes] = {}, a2[kLanes] = {};
    const int64_t full = b + (e - b) / kLanes * kLanes;
    for (int64_t k = b; k < full; k += kLanes)
      for (int j = 0; j < kLanes; ++j) a1[j] += g[k + j];
    for (int64_t k = b; k < full; k += kLanes)
      for (int j = 0; j < kLanes; ++j) a2[j] += g[k + j] * (x[k + j] - m);
    int64_t i = full;
    double t1 = 0, t2 = 0;
    for (; i < e; ++i) { t1 += g[i]; t2 += g[i] * (x[i] - m); }
    for (int j = 0; j < kLanes; ++j) { t1 += a1[j]; t2 += a2[j]; }
    sg += t1;
    sgx += t2;
  }
}

// The activations batch norm can carry (attrs pre: "gelu" before it, post: "relu" after it;
// see act_batch_norm in src/tensor/ops/norm.ts): GELU on a run, and, for double, the backward's
// two passes over a run with GELU first, GELU and its derivative recomputed from x (float's
// keep them between the passes: bn_gelu_sums_stash_f32).
void gelu_run(const float* x, float* y, int64_t n) { gelu_f32_array(x, y, n); }
void gelu_run(const double* x, double* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = fastmath::gelu_exact(x[i]);
}
void bn_gelu_sums(const double* g, const double* x, int64_t n, double mean, double& sg, double& sgx) {
  for (int64_t i = 0; i < n; ++i) {
    sg += g[i];
    sgx += g[i] * (fastmath::gelu_exact(x[i]) - mean);
  }
}
void bn_gelu_dx(const double* g, const double* x, double* dx, int64_t n, double ta, double tk, double tc) {
  for (int64_t i = 0; i < n; ++i) dx[i] = (ta * g[i] + tk * fastmath::gelu_exact(x[i]) + tc) * fastmath::gelu_grad_exact(x[i]);
}

struct BnActs {
  bool gelu, relu;
  explicit BnActs(const Attrs& at) : gelu(at.str("pre", "none") == "gelu"), relu(at.str("post", "none") == "relu") {
    if (!gelu && at.str("pre", "none") != "none") throw KernelError("batch_norm: pre must be gelu or none, got " + at.str("pre"));
    if (!relu && at.str("post", "none") != "none") throw KernelError("batch_norm: post must be relu or none, got " + at.str("post"));
  }
};

// q = p * a + sh over a run, then a ReLU when relu: the normalising pass of batch and group
// norm (per channel a = weight * invstd, sh = bias - mean * a).
template <typename T>
void affine_run(const T* p, T* q, int64_t n, T a, T sh, bool relu) {
  if (relu) {
    for (int64_t i = 0; i < n; ++i) {
      const T v = p[i] * a + sh;
      q[i] = v > T(0) ? v : T(0);
    }
  } else {
    for (int64_t i = 0; i < n; ++i) q[i] = p[i] * a + sh;
  }
}

template <typename T>
void bn_typed(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const TArg& x = in[0];
  const Opt o = optional_inputs(in, 1, at, true);
  const BnActs act(at);
  const bool training = at.b("training");
  const double eps = at.num("eps"), mom = at.num("momentum");
  const int64_t N = x.shape[0], C = x.shape[1], S = x.numel() / std::max<int64_t>(1, N * C), M = N * S;
  const T* xp = x.ptr<T>();
  T* yp = out[0].ptr<T>();
  T* smean = out[1].ptr<T>();
  T* sinv = out[2].ptr<T>();
  parallel_for(0, C, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      // One pass for the statistics; with GELU first, each block's GELU values go to y and
      // are summed from L1 there (the normalising pass then reads them back from y), in the
      // same blocks and order as a batch norm reading a separate GELU op's output.
      const T* ap = act.gelu ? yp : xp;
      double mean, invstd;
      if (training) {
        Moments st;
        for (int64_t n = 0; n < N; ++n) {
          const int64_t row = (n * C + c) * S;
          for (int64_t b = 0; b < S; b += kBlock) {
            const int64_t len = std::min(kBlock, S - b);
            if (act.gelu) gelu_run(xp + row + b, yp + row + b, len);
            st.add(ap + row + b, len);
          }
        }
        mean = st.mean;
        const double ss = st.m2;
        invstd = 1.0 / std::sqrt(ss / M + eps);
        if (o.rmean) {
          // In-place running-stat update; the variance is the unbiased one, like PyTorch.
          T* rm = o.rmean->ptr<T>();
          T* rv = o.rvar->ptr<T>();
          rm[c] = static_cast<T>((1 - mom) * rm[c] + mom * mean);
          rv[c] = static_cast<T>((1 - mom) * rv[c] + mom * (M > 1 ? ss / (M - 1) : ss));
        }
      } else {
        if (act.gelu)
          for (int64_t n = 0; n < N; ++n) gelu_run(xp + (n * C + c) * S, yp + (n * C + c) * S, S);
        mean = o.rmean->ptr<T>()[c];
        invstd = 1.0 / std::sqrt(static_cast<double>(o.rvar->ptr<T>()[c]) + eps);
      }
      smean[c] = static_cast<T>(mean);
      sinv[c] = static_cast<T>(invstd);
      const double w = o.weight ? o.weight->ptr<T>()[c] : 1.0, b = o.bias ? o.bias->ptr<T>()[c] : 0.0;
      const T a = static_cast<T>(w * invstd), sh = static_cast<T>(b - mean * (w * invstd));
      for (int64_t n = 0; n < N; ++n) affine_run(ap + (n * C + c) * S, yp + (n * C + c) * S, S, a, sh, act.relu);
    }
  });
}

// in: x [N, C, *], weight? [C], bias? [C], runningMean? [C], runningVar? [C] (present per
// attrs hasWeight, hasBias, hasRunning); out: y, saveMean [C], saveInvstd [C]; attrs:
// training (normalise with batch statistics), momentum, eps, and optionally pre ("gelu":
// normalise gelu(x)) and post ("relu": y = relu of the normalised value). When training and hasRunning,
// the kernel WRITES runningMean/runningVar in place through their input pointers (TS
// guarantees they are contiguous and not aliased with anything the kernel reads otherwise).
// Without training, runningMean/runningVar are required and only read.
void batch_norm_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  if (!at.b("training") && !at.b("hasRunning")) throw KernelError("batch_norm: inference needs running statistics");
  SC_FLOAT_DISPATCH(in[0].dtype, T, bn_typed<T>(in, out, at));
}
SC_KERNEL("batch_norm", cpu, batch_norm_kernel);

// g where y > 0, else 0 (relu' from the ReLU's output). Both values are loaded whatever the
// test gives: written as `y > 0 ? g[i] : 0` the load of g was conditional, GCC kept a branch
// (mispredicted on half the values), and the ReLU case ran 5x slower than the plain one.
template <typename T>
void masked_g_run(const T* __restrict__ g, const T* __restrict__ y, int64_t n, T* __restrict__ out) {
  for (int64_t i = 0; i < n; ++i) {
    const T gv = g[i], yv = y[i];
    out[i] = yv > T(0) ? gv : T(0);
  }
}

// Visits the plane [plane, plane + S) a block at a time: fn(offset, len, gp), gp the incoming
// gradient of the normalised value: g, masked by the ReLU into gbuf when its output y is given.
template <typename T, typename F>
void each_masked_block(const T* g, const T* y, int64_t plane, int64_t S, T* gbuf, F&& fn) {
  for (int64_t i0 = 0; i0 < S; i0 += kBlock) {
    const int64_t off = plane + i0, len = std::min(kBlock, S - i0);
    const T* gp = g + off;
    if (y) {
      masked_g_run(gp, y + off, len, gbuf);
      gp = gbuf;
    }
    fn(off, len, gp);
  }
}

// gelu'(x) of one channel between the backward's two passes; grown, never shrunk, per thread.
float* gelu_grad_stash(int64_t n) {
  thread_local std::vector<float> buf;
  if ((int64_t)buf.size() < n) buf.resize(n);
  return buf.data();
}

template <typename T>
void bn_bwd_typed(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const TArg &g = in[0], &x = in[1];
  const Opt o = optional_inputs(in, 2, at, false);
  const BnActs act(at);
  const size_t k = 2 + (o.weight ? 1 : 0) + (o.bias ? 1 : 0);
  const T* smean = in[k].ptr<T>();
  const T* sinv = in[k + 1].ptr<T>();
  const T* yout = act.relu ? in[k + 2].ptr<T>() : nullptr;  // relu'(v) from the output: y > 0 where v > 0
  const bool training = at.b("training");
  const int64_t N = x.shape[0], C = x.shape[1], S = x.numel() / std::max<int64_t>(1, N * C), M = N * S;
  T *dx = out[0].ptr<T>(), *dw = out[1].ptr<T>(), *db = out[2].ptr<T>();
  parallel_for(0, C, 1, [&](int64_t c0, int64_t c1) {
    alignas(64) T gbuf[kBlock];
    const T* xp = x.ptr<T>();
    // Visits channel c's planes a block at a time (each_masked_block).
    auto each_block = [&](int64_t c, auto&& fn) {
      for (int64_t n = 0; n < N; ++n) each_masked_block(g.ptr<T>(), yout, (n * C + c) * S, S, gbuf, fn);
    };
    // float with GELU: the sums pass keeps gelu(x) in dx and gelu'(x) in this thread's stash
    // (the channel's N*S values), so the dx pass computes no exp / erf again (double
    // recomputes both from x in the exact form).
    constexpr bool kStash = std::is_same_v<T, float>;
    float* dstash = kStash && act.gelu ? gelu_grad_stash(M) : nullptr;
    for (int64_t c = c0; c < c1; ++c) {
      const double mean = smean[c], inv = sinv[c], w = o.weight ? o.weight->ptr<T>()[c] : 1.0;
      double sg = 0, sgx = 0;
      int64_t k = 0;  // position of the block in the channel's stash
      each_block(c, [&](int64_t off, int64_t len, const T* gp) {
        if (!act.gelu) {
          sum_g_gx_run(gp, xp + off, len, static_cast<T>(mean), sg, sgx);
        } else if constexpr (kStash) {
          bn_gelu_sums_stash_f32(gp, xp + off, len, static_cast<float>(mean), &sg, &sgx, dx + off, dstash + k);
          k += len;
        } else {
          bn_gelu_sums(gp, xp + off, len, mean, sg, sgx);
        }
      });
      sgx *= inv;
      dw[c] = static_cast<T>(sgx);
      db[c] = static_cast<T>(sg);
      // Training: the batch statistics depend on x, which adds the two mean terms.
      // da = s (g - mg - (a - mean) inv mgx) = s g + k a + c0 (a: the normalised input, x or
      // gelu(x)), in T so the loop vectorises; dx = da, times gelu'(x) with GELU first.
      const double a = w * inv, mg = training ? sg / M : 0.0, mgx = training ? sgx / M : 0.0;
      const T ta = static_cast<T>(a), tk = static_cast<T>(-a * inv * mgx), tc = static_cast<T>(a * (mean * inv * mgx - mg));
      k = 0;
      each_block(c, [&](int64_t off, int64_t len, const T* gp) {
        const T* xa = xp + off;
        T* dp = dx + off;
        if (!act.gelu) {
          for (int64_t i = 0; i < len; ++i) dp[i] = ta * gp[i] + tk * xa[i] + tc;
        } else if constexpr (kStash) {
          const float* d = dstash + k;
          k += len;
          for (int64_t i = 0; i < len; ++i) dp[i] = (ta * gp[i] + tk * dp[i] + tc) * d[i];
        } else {
          bn_gelu_dx(gp, xa, dp, len, ta, tk, tc);
        }
      });
    }
  });
}

// in: gy, x, weight? (attr hasWeight), saveMean, saveInvstd (from batch_norm; in inference
// mode they hold the running statistics), then y (the forward's output) with post relu; out:
// dx, dweight [C], dbias [C] (always all three); attrs: hasWeight, training, pre, post (as the
// forward's: dx is then the gradient of the input before the GELU).
void batch_norm_backward_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  SC_FLOAT_DISPATCH(in[0].dtype, T, bn_bwd_typed<T>(in, out, at));
}
SC_KERNEL("batch_norm_backward", cpu, batch_norm_backward_kernel);

// ---- group norm ----------------------------------------------------------------------------
//
// Rows are (image, group): the group's Cg = C / G channel planes of S values, contiguous in
// [N, C, *]. The per-channel affine and a ReLU after it are applied in the normalising pass, and
// the backward gives dx, dweight and dbias from two passes over g and x; composed of the layer
// norm kernels and elementwise ops, the affine, its gradient and the recomputed normalised
// values were five more passes over activation-sized tensors (MedNeXt normalises every block).

template <typename T>
void gn_typed(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const TArg& x = in[0];
  const Opt o = optional_inputs(in, 1, at, false);
  const norm::GnShape gs = norm::gn_shape(x, at, "group_norm_fused");
  const int64_t G = gs.G, N = gs.N, S = gs.S, Cg = gs.Cg, D = Cg * S;
  const double eps = at.num("eps");
  const T* xp = x.ptr<T>();
  T* yp = out[0].ptr<T>();
  T* mp = out[1].ptr<T>();
  T* ip = out[2].ptr<T>();
  const T* w = o.weight ? o.weight->ptr<T>() : nullptr;
  const T* b = o.bias ? o.bias->ptr<T>() : nullptr;
  parallel_for(0, N * G, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      Moments st;
      st.add_run(xp + r * D, D);
      const double mean = st.mean, inv = 1.0 / std::sqrt(st.m2 / D + eps);
      mp[r] = static_cast<T>(mean);
      ip[r] = static_cast<T>(inv);
      for (int64_t ci = 0; ci < Cg; ++ci) {
        const int64_t c = (r % G) * Cg + ci;
        const double a = (w ? w[c] : 1.0) * inv;
        affine_run(xp + r * D + ci * S, yp + r * D + ci * S, S, static_cast<T>(a),
                   static_cast<T>((b ? b[c] : 0.0) - mean * a), gs.relu);
      }
    }
  });
}

// in: x [N, C, *], weight? [C], bias? [C] (attrs hasWeight, hasBias); out: y, mean [N * G],
// invstd [N * G]; attrs: groups, eps, post ("relu" after the affine, or "none").
void group_norm_fused_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  SC_FLOAT_DISPATCH(in[0].dtype, T, gn_typed<T>(in, out, at));
}
SC_KERNEL("group_norm_fused", cpu, group_norm_fused_kernel);

template <typename T>
void gn_bwd_typed(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const norm::GnBackward<T> a = norm::gn_backward_inputs<T>(in, at);
  const T *mp = a.mean, *ip = a.inv, *w = a.w, *xp = a.x;  // a.y: the ReLU's output, for its mask
  const int64_t G = a.s.G, N = a.s.N, C = a.s.C, S = a.s.S, Cg = a.s.Cg, D = Cg * S;
  T *dx = out[0].ptr<T>(), *dw = out[1].ptr<T>(), *db = out[2].ptr<T>();
  // Per (image, channel) parameter-gradient terms, summed over images in order below: the
  // result does not depend on how rows were split between threads.
  std::vector<double> pw((size_t)(N * C)), pb((size_t)(N * C));
  parallel_for(0, N * G, 1, [&](int64_t r0, int64_t r1) {
    alignas(64) T gbuf[kBlock];
    auto each_block = [&](int64_t plane, auto&& fn) { each_masked_block(a.g, a.y, plane, S, gbuf, fn); };
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / G, c0 = (r % G) * Cg;
      const double mean = mp[r], inv = ip[r];
      // With gh = g * w[c] the gradient of the normalised value xh:
      // dx = inv (gh - mean(gh) - xh mean(gh xh)), means over the row.
      double sgh = 0, sghx = 0;
      for (int64_t ci = 0; ci < Cg; ++ci) {
        double sg = 0, sgx = 0;
        each_block(r * D + ci * S, [&](int64_t off, int64_t len, const T* gp) {
          sum_g_gx_run(gp, xp + off, len, static_cast<T>(mean), sg, sgx);
        });
        const double wc = w ? w[c0 + ci] : 1.0;
        sgh += wc * sg;
        sghx += wc * sgx * inv;
        pw[n * C + c0 + ci] = sgx * inv;
        pb[n * C + c0 + ci] = sg;
      }
      const double ma = sgh / D, mb = sghx / D;
      const T tk = static_cast<T>(-inv * inv * mb), tc = static_cast<T>(inv * (inv * mb * mean - ma));
      for (int64_t ci = 0; ci < Cg; ++ci) {
        const T ta = static_cast<T>(inv * (w ? w[c0 + ci] : 1.0));
        each_block(r * D + ci * S, [&](int64_t off, int64_t len, const T* gp) {
          const T* xa = xp + off;
          T* dp = dx + off;
          for (int64_t i = 0; i < len; ++i) dp[i] = ta * gp[i] + tk * xa[i] + tc;
        });
      }
    }
  });
  for (int64_t c = 0; c < C; ++c) {
    double sw = 0, sb = 0;
    for (int64_t n = 0; n < N; ++n) sw += pw[n * C + c], sb += pb[n * C + c];
    dw[c] = static_cast<T>(sw);
    db[c] = static_cast<T>(sb);
  }
}

// in: gy, x, weight? (attr hasWeight), mean, invstd (from group_norm_fused), then y (the
// forward's output) with post relu; out: dx, dweight [C], dbias [C] (always all three); attrs:
// groups, hasWeight, post.
void group_norm_fused_backward_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  SC_FLOAT_DISPATCH(in[0].dtype, T, gn_bwd_typed<T>(in, out, at));
}
SC_KERNEL("group_norm_fused_backward", cpu, group_norm_fused_backward_kernel);

// ---- layer norm ---------------------------------------------------------------------------

template <typename T>
void ln_typed(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const TArg& x = in[0];
  const Opt o = optional_inputs(in, 1, at, false);
  const int64_t D = at.i("d"), R = D > 0 ? x.numel() / D : 0;
  const double eps = at.num("eps");
  const T* w = o.weight ? o.weight->ptr<T>() : nullptr;
  const T* b = o.bias ? o.bias->ptr<T>() : nullptr;
  parallel_for(0, R, std::max<int64_t>(1, 8192 / std::max<int64_t>(1, D)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* p = x.ptr<T>() + r * D;
      T* q = out[0].ptr<T>() + r * D;
      // The batch norm's blocked sums (float lanes, a double per block) and a normalising loop
      // in T: the scalar double loops here took ~4 cycles per value (GroupNorm rows are whole
      // planes: 65536 values at 256 px).
      Moments st;
      st.add_run(p, D);
      const double mean = st.mean;
      const double inv = 1.0 / std::sqrt(st.m2 / D + eps);
      out[1].ptr<T>()[r] = static_cast<T>(mean);
      out[2].ptr<T>()[r] = static_cast<T>(inv);
      const T tm = static_cast<T>(mean), ti = static_cast<T>(inv);
      if (w && b) for (int64_t i = 0; i < D; ++i) q[i] = (p[i] - tm) * ti * w[i] + b[i];
      else if (w) for (int64_t i = 0; i < D; ++i) q[i] = (p[i] - tm) * ti * w[i];
      else if (b) for (int64_t i = 0; i < D; ++i) q[i] = (p[i] - tm) * ti + b[i];
      else for (int64_t i = 0; i < D; ++i) q[i] = (p[i] - tm) * ti;
    }
  });
}

// in: x [..., D], weight? [D], bias? [D] (attrs hasWeight, hasBias); out: y, mean [rows],
// invstd [rows]; attrs: d (elements normalised together), eps.
void layer_norm_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  SC_FLOAT_DISPATCH(in[0].dtype, T, ln_typed<T>(in, out, at));
}
SC_KERNEL("layer_norm", cpu, layer_norm_kernel);

template <typename T>
void ln_bwd_typed(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const norm::LnBackward<T> a = norm::ln_backward_inputs<T>(in, at);
  const T *w = a.w, *mean = a.mean, *inv = a.inv;
  const int64_t D = a.D, R = a.R;
  const T *gp = a.g, *xp = a.x;
  // One row's dx; with sw / sb, the row's parameter-gradient terms are added there too.
  auto row = [&](int64_t r, double* __restrict__ sw, double* __restrict__ sb) {
    const T *gr = gp + r * D, *xr = xp + r * D;
    const double m = mean[r], iv = inv[r];
    T* dx = out[0].ptr<T>() + r * D;
    if (sw)
      for (int64_t c = 0; c < D; ++c) {
        const double gv = gr[c];
        sw[c] += gv * (xr[c] - m) * iv;
        sb[c] += gv;
      }
    // s1, s2: means of gw = g*w and of gw*xhat over the row, by the batch norm's blocked sums
    // (gw formed a block at a time in dx, which the second pass overwrites).
    double s1 = 0, s2 = 0;
    for (int64_t i0 = 0; i0 < D; i0 += kBlock) {
      const int64_t len = std::min(kBlock, D - i0);
      const T* gw = gr + i0;
      if (w) {
        for (int64_t i = 0; i < len; ++i) dx[i0 + i] = gr[i0 + i] * w[i0 + i];
        gw = dx + i0;
      }
      sum_g_gx_run(gw, xr + i0, len, static_cast<T>(m), s1, s2);
    }
    s1 /= D;
    s2 = s2 * iv / D;
    // dx = iv (gw - s1 - xhat s2) = iv gw + k x + c, in T so the loop vectorises.
    const T ti = static_cast<T>(iv), tk = static_cast<T>(-iv * iv * s2), tc = static_cast<T>(iv * (m * iv * s2 - s1));
    if (w) for (int64_t i = 0; i < D; ++i) dx[i] = ti * (gr[i] * w[i]) + tk * xr[i] + tc;
    else for (int64_t i = 0; i < D; ++i) dx[i] = ti * gr[i] + tk * xr[i] + tc;
  };
  T* dw = out[1].ptr<T>();
  T* db = out[2].ptr<T>();
  if (D <= 1024) {
    // Short rows (token layer norms: [8,1024,32]): the parameter gradients are summed in the row
    // pass, per fixed chunk of 64 rows, and the chunks combined in order (ordered_row_sums: the
    // same result for any thread count). Reducing them afterwards by column ranges read every row
    // once per range. Partials: D weight-gradient columns, then D bias-gradient ones.
    constexpr int64_t kRows = 64;
    ordered_row_sums(R, 2 * D, kRows, std::max<int64_t>(1, 8192 / (D * kRows)),
                     [&](int64_t r, double* part) { row(r, part, part + D); },
                     [&](int64_t j, double s) { (j < D ? dw[j] : db[j - D]) = static_cast<T>(s); });
    return;
  }
  parallel_for(0, R, std::max<int64_t>(1, 8192 / D), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) row(r, nullptr, nullptr);
  });
  // Long rows (group norm's whole planes), few of them: the parameter gradients reduce over
  // rows with the columns split, so each thread owns its sums.
  parallel_for(0, D, std::max<int64_t>(1, 65536 / std::max<int64_t>(1, R)), [&](int64_t c0, int64_t c1) {
    std::vector<double> sw(c1 - c0, 0.0), sb(c1 - c0, 0.0);
    for (int64_t r = 0; r < R; ++r) {
      const double m = mean[r], iv = inv[r];
      for (int64_t c = c0; c < c1; ++c) {
        const double gv = gp[r * D + c];
        sw[c - c0] += gv * (xp[r * D + c] - m) * iv;
        sb[c - c0] += gv;
      }
    }
    for (int64_t c = c0; c < c1; ++c) {
      dw[c] = static_cast<T>(sw[c - c0]);
      db[c] = static_cast<T>(sb[c - c0]);
    }
  });
}

// in: gy, x, weight? (attr hasWeight), mean, invstd (from layer_norm); out: dx, dweight [D],
// dbias [D] (always all three); attrs: d, hasWeight.
void layer_norm_backward_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  SC_FLOAT_DISPATCH(in[0].dtype, T, ln_bwd_typed<T>(in, out, at));
}
SC_KERNEL("layer_norm_backward", cpu, layer_norm_backward_kernel);

}  // namespace
}  // namespace sc
