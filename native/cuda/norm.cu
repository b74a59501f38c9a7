// Batch, layer and group normalisation on the CUDA backend (mirror native/kernels/norm.cc). Sums
// accumulate in double like the CPU's, so float32 statistics stay accurate on large batches.
//
// batch_norm: x [N, C, S] viewed per channel as M = N*S elements. Statistics are a two-stage,
// deterministic reduction without atomics: a grid of (C x P) blocks, each reducing a slice of one
// channel with warp shuffles and a shared-memory stage across warps into a partial, then one
// thread per channel adds its P partials in order (P == 1 when M is small: one block per
// channel). Two passes (mean, then squared deviations) like the CPU. A per-channel finalize
// kernel writes saveMean/saveInvstd, updates runningMean/runningVar in place (unbiased variance)
// and computes the affine scale/shift; an elementwise kernel applies it.
// batch_norm_backward: one reduction pass gives sum(g) and sum(g * xhat) per channel (dbias,
// dweight and the two mean terms), then an elementwise kernel writes dx.
// group_norm_fused / group_norm_fused_backward: see their section below.
// layer_norm / layer_norm_backward: one warp per row (one block for rows longer than 1024) with
// shuffle reductions; dweight/dbias are column sums over rows, done in (column tile x row split)
// blocks of 32 x 8 threads into partials and summed per column in order.
#include "cuda/compat.cuh"
#include "cuda/common.cuh"
#include "kernels/norm_params.h"

#include <algorithm>
#include <vector>

namespace sc {
namespace cu {
namespace {

// Sum over a group of GROUP threads (a warp, or the whole block); every thread gets the result.
template <int GROUP>
__device__ __forceinline__ double group_sum(double v, double* scratch) {
  if (GROUP == 32) return warp_allsum(v);
  return block_sum(v, scratch);
}

using norm::Opt;
using norm::optional_inputs;

template <typename T>
const T* opt_ptr(const TArg* a) { return a ? a->ptr<T>() : nullptr; }

// ---- batch norm: per-channel reductions -----------------------------------------------------

// Number of blocks per channel for the partial reductions.
int64_t bn_splits(int64_t C, int64_t M) {
  const int64_t want_blocks = 264;  // a few waves of SMs
  int64_t P = 1;
  if (C < want_blocks) P = std::max<int64_t>(1, std::min<int64_t>(want_blocks / std::max<int64_t>(1, C), M / (4 * kThreads)));
  return std::min<int64_t>(P, 1024);
}

enum BnPass : int { BN_SUM = 0, BN_SQDEV = 1, BN_GRAD = 2 };

// Block (c, p) reduces elements [p*chunk, (p+1)*chunk) of channel c (element e is n = e / S,
// i = e % S). BN_SUM: sum x -> part0. BN_SQDEV: sum (x - mean)^2 -> part0. BN_GRAD: sum g ->
// part0, sum g * (x - mean) * invstd -> part1 (mean/invstd from smean/sinv).
template <typename T, int PASS>
__global__ void bn_partial_k(const T* __restrict__ x, const T* __restrict__ g, const double* __restrict__ dmean,
                             const T* __restrict__ smean, const T* __restrict__ sinv, double* __restrict__ part0,
                             double* __restrict__ part1, int64_t C, int64_t S, int64_t M, int64_t chunk) {
  __shared__ double scratch[32];
  const int64_t c = blockIdx.x, p = blockIdx.y, P = gridDim.y;
  const int64_t e0 = p * chunk;
  const int64_t e1 = e0 + chunk < M ? e0 + chunk : M;
  double mean = 0, inv = 0;
  if (PASS == BN_SQDEV) mean = dmean[c];
  if (PASS == BN_GRAD) { mean = smean[c]; inv = sinv[c]; }
  double a0 = 0, a1 = 0;
  int64_t n = e0 / S, i = e0 - n * S;
  // Advance (n, i) by blockDim.x per step without a division per element.
  const int64_t step = blockDim.x, sn = step / S, si = step - sn * S;
  {
    int64_t t = threadIdx.x, tn = t / S, ti = t - tn * S;
    n += tn; i += ti;
    if (i >= S) { i -= S; ++n; }
  }
  for (int64_t e = e0 + threadIdx.x; e < e1; e += step) {
    const int64_t off = (n * C + c) * S + i;
    const double xv = x[off];
    if (PASS == BN_SUM) a0 += xv;
    else if (PASS == BN_SQDEV) { const double d = xv - mean; a0 += d * d; }
    else { const double gv = g[off]; a0 += gv; a1 += gv * (xv - mean) * inv; }
    n += sn; i += si;
    if (i >= S) { i -= S; ++n; }
  }
  a0 = block_sum(a0, scratch);
  if (PASS == BN_GRAD) a1 = block_sum(a1, scratch);
  if (threadIdx.x == 0) {
    part0[c * P + p] = a0;
    if (PASS == BN_GRAD) part1[c * P + p] = a1;
  }
}

// One thread per channel: the mean from the P partial sums.
__global__ void bn_mean_k(const double* __restrict__ part, double* __restrict__ dmean, int64_t C, int64_t P, int64_t M) {
  SC_GRID_STRIDE(c, C) {
    double s = 0;
    for (int64_t p = 0; p < P; ++p) s += part[c * P + p];
    dmean[c] = s / (double)M;
  }
}

// One thread per channel: statistics, running-stat update, and the affine scale/shift.
template <typename T>
__global__ void bn_finalize_k(const double* __restrict__ part, const double* __restrict__ dmean, T* rmean, T* rvar,
                              const T* __restrict__ w, const T* __restrict__ b, T* __restrict__ smean,
                              T* __restrict__ sinv, double* __restrict__ scale, double* __restrict__ shift, int64_t C,
                              int64_t P, int64_t M, double eps, double mom, int training) {
  SC_GRID_STRIDE(c, C) {
    double mean, invstd;
    if (training) {
      double ss = 0;
      for (int64_t p = 0; p < P; ++p) ss += part[c * P + p];
      mean = dmean[c];
      invstd = 1.0 / sqrt(ss / (double)M + eps);
      if (rmean) {
        rmean[c] = static_cast<T>((1 - mom) * (double)rmean[c] + mom * mean);
        rvar[c] = static_cast<T>((1 - mom) * (double)rvar[c] + mom * (M > 1 ? ss / (double)(M - 1) : ss));
      }
    } else {
      mean = rmean[c];
      invstd = 1.0 / sqrt(static_cast<double>(rvar[c]) + eps);
    }
    smean[c] = static_cast<T>(mean);
    sinv[c] = static_cast<T>(invstd);
    const double wv = w ? (double)w[c] : 1.0, bv = b ? (double)b[c] : 0.0;
    const double a = wv * invstd;
    scale[c] = a;
    shift[c] = bv - mean * a;
  }
}

// y = x * scale[c] + shift[c], elementwise over [N, C, S].
template <typename T>
__global__ void bn_apply_k(const T* __restrict__ x, T* __restrict__ y, const double* __restrict__ scale,
                           const double* __restrict__ shift, int64_t C, int64_t S, int64_t total) {
  SC_GRID_STRIDE(idx, total) {
    const int64_t c = (idx / S) % C;
    y[idx] = static_cast<T>((double)x[idx] * scale[c] + shift[c]);
  }
}

template <typename T>
void bn_typed(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const TArg& x = in[0];
  if (x.ndim < 2) throw KernelError("batch_norm: expected x [N, C, *]");
  const Opt o = optional_inputs(in, 1, at, true);
  const bool training = at.b("training");
  const double eps = at.num("eps"), mom = at.num("momentum");
  const int64_t N = x.shape[0], C = x.shape[1], S = x.numel() / std::max<int64_t>(1, N * C), M = N * S;
  if (C == 0) return;
  Scratch sbuf(sizeof(double) * C * 3);
  double* dmean = sbuf.as<double>();
  double* scale = dmean + C;
  double* shift = scale + C;
  const int64_t P = training ? bn_splits(C, M) : 1;
  Scratch spart(sizeof(double) * C * P);
  double* part = spart.as<double>();
  T* rm = o.rmean ? const_cast<T*>(o.rmean->ptr<T>()) : nullptr;
  T* rv = o.rvar ? const_cast<T*>(o.rvar->ptr<T>()) : nullptr;
  if (training) {
    if (M == 0) throw KernelError("batch_norm: empty batch");
    const int64_t chunk = ceil_div64(M, P);
    const dim3 grid((unsigned)C, (unsigned)P);
    KLAUNCH((bn_partial_k<T, BN_SUM>), grid, kThreads, 0, 0)(x.ptr<T>(), nullptr, nullptr, nullptr, nullptr, part, nullptr, C, S, M, chunk);
    check_launch("batch_norm");
    KLAUNCH(bn_mean_k, blocks_for(C), kThreads, 0, 0)(part, dmean, C, P, M);
    check_launch("batch_norm");
    KLAUNCH((bn_partial_k<T, BN_SQDEV>), grid, kThreads, 0, 0)(x.ptr<T>(), nullptr, dmean, nullptr, nullptr, part, nullptr, C, S, M, chunk);
    check_launch("batch_norm");
  }
  KLAUNCH(bn_finalize_k<T>, blocks_for(C), kThreads, 0, 0)(part, dmean, rm, rv, opt_ptr<T>(o.weight), opt_ptr<T>(o.bias), out[1].ptr<T>(), out[2].ptr<T>(), scale, shift, C, P, M, eps, mom, training ? 1 : 0);
  check_launch("batch_norm");
  const int64_t total = x.numel();
  if (total > 0) {
    KLAUNCH(bn_apply_k<T>, blocks_for(total), kThreads, 0, 0)(x.ptr<T>(), out[0].ptr<T>(), scale, shift, C, S, total);
    check_launch("batch_norm");
  }
}

// in: x [N, C, *], weight? [C], bias? [C], runningMean? [C], runningVar? [C] (per hasWeight,
// hasBias, hasRunning); out: y, saveMean [C], saveInvstd [C]; attrs: training, momentum, eps.
// Training with hasRunning updates runningMean/runningVar in place through their input pointers.
// The fused activations of the CPU kernel (attrs pre/post) are not built here: act_batch_norm
// runs them as separate kernels on this backend (src/tensor/ops/norm.ts).
void no_fused_activations(const Attrs& at) {
  if (at.str("pre", "none") != "none" || at.str("post", "none") != "none") throw KernelError("batch_norm: fused activations are not supported on cuda");
}

void batch_norm_cuda(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  no_fused_activations(at);
  if (!at.b("training") && !at.b("hasRunning")) throw KernelError("batch_norm: inference needs running statistics");
  SC_FLOAT_DISPATCH(in[0].dtype, T, bn_typed<T>(in, out, at));
}

// One thread per channel: dweight, dbias and the dx coefficients
//   dx = a * (g - mg - (x - mean) * inv * mgx) = k1 * g + k2 * x + k3.
template <typename T>
__global__ void bn_bwd_finalize_k(const double* __restrict__ p0, const double* __restrict__ p1, const T* __restrict__ w,
                                  const T* __restrict__ smean, const T* __restrict__ sinv, T* __restrict__ dw,
                                  T* __restrict__ db, double* __restrict__ coef, int64_t C, int64_t P, int64_t M,
                                  int training) {
  SC_GRID_STRIDE(c, C) {
    double sg = 0, sgx = 0;
    for (int64_t p = 0; p < P; ++p) { sg += p0[c * P + p]; sgx += p1[c * P + p]; }
    dw[c] = static_cast<T>(sgx);
    db[c] = static_cast<T>(sg);
    const double mean = smean[c], inv = sinv[c], wv = w ? (double)w[c] : 1.0;
    const double a = wv * inv, mg = training ? sg / (double)M : 0.0, mgx = training ? sgx / (double)M : 0.0;
    coef[c * 4 + 0] = a;
    coef[c * 4 + 1] = mg;
    coef[c * 4 + 2] = mgx;
    coef[c * 4 + 3] = mean;
  }
}

template <typename T>
__global__ void bn_bwd_dx_k(const T* __restrict__ g, const T* __restrict__ x, const T* __restrict__ sinv,
                            const double* __restrict__ coef, T* __restrict__ dx, int64_t C, int64_t S, int64_t total) {
  SC_GRID_STRIDE(idx, total) {
    const int64_t c = (idx / S) % C;
    const double a = coef[c * 4 + 0], mg = coef[c * 4 + 1], mgx = coef[c * 4 + 2], mean = coef[c * 4 + 3];
    const double inv = sinv[c];
    dx[idx] = static_cast<T>(a * ((double)g[idx] - mg - ((double)x[idx] - mean) * inv * mgx));
  }
}

template <typename T>
void bn_bwd_typed(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const TArg &g = in[0], &x = in[1];
  if (x.ndim < 2) throw KernelError("batch_norm_backward: expected x [N, C, *]");
  const Opt o = optional_inputs(in, 2, at, false);
  const size_t k = 2 + (o.weight ? 1 : 0) + (o.bias ? 1 : 0);
  if (k + 1 >= in.size()) throw KernelError("batch_norm_backward: missing saveMean/saveInvstd");
  const T* smean = in[k].ptr<T>();
  const T* sinv = in[k + 1].ptr<T>();
  const bool training = at.b("training");
  const int64_t N = x.shape[0], C = x.shape[1], S = x.numel() / std::max<int64_t>(1, N * C), M = N * S;
  if (C == 0) return;
  const int64_t P = bn_splits(C, M);
  Scratch spart(sizeof(double) * C * P * 2), scoef(sizeof(double) * C * 4);
  double* p0 = spart.as<double>();
  double* p1 = p0 + C * P;
  double* coef = scoef.as<double>();
  const int64_t chunk = std::max<int64_t>(1, ceil_div64(M, P));
  const dim3 grid((unsigned)C, (unsigned)P);
  KLAUNCH((bn_partial_k<T, BN_GRAD>), grid, kThreads, 0, 0)(x.ptr<T>(), g.ptr<T>(), nullptr, smean, sinv, p0, p1, C, S, M, chunk);
  check_launch("batch_norm_backward");
  KLAUNCH(bn_bwd_finalize_k<T>, blocks_for(C), kThreads, 0, 0)(p0, p1, opt_ptr<T>(o.weight), smean, sinv, out[1].ptr<T>(), out[2].ptr<T>(), coef, C, P, M, training ? 1 : 0);
  check_launch("batch_norm_backward");
  const int64_t total = x.numel();
  if (total > 0) {
    KLAUNCH(bn_bwd_dx_k<T>, blocks_for(total), kThreads, 0, 0)(g.ptr<T>(), x.ptr<T>(), sinv, coef, out[0].ptr<T>(), C, S, total);
    check_launch("batch_norm_backward");
  }
}

// in: gy, x, weight? (hasWeight), saveMean, saveInvstd; out: dx, dweight [C], dbias [C];
// attrs: hasWeight, training.
void batch_norm_backward_cuda(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  no_fused_activations(at);
  SC_FLOAT_DISPATCH(in[0].dtype, T, bn_bwd_typed<T>(in, out, at));
}

// ---- layer norm -----------------------------------------------------------------------------

template <typename T, int GROUP>
__global__ void ln_fwd_k(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b, T* __restrict__ y,
                         T* __restrict__ mean_out, T* __restrict__ inv_out, int64_t R, int64_t D, double eps) {
  __shared__ double scratch[32];
  const int per_block = blockDim.x / GROUP;
  const int t = threadIdx.x % GROUP;
  // Every thread of a block runs the same number of iterations (block_sum needs them all).
  const int64_t first = (int64_t)blockIdx.x * per_block, stride = (int64_t)gridDim.x * per_block;
  for (int64_t r0 = first; r0 < R; r0 += stride) {
    const int64_t r = r0 + threadIdx.x / GROUP;
    const bool live = r < R;  // only the warp form can have dead rows; they idle through
    const T* p = x + (live ? r : 0) * D;
    double s = 0;
    if (live) for (int64_t i = t; i < D; i += GROUP) s += p[i];
    s = group_sum<GROUP>(s, scratch);
    const double mean = s / (double)D;
    double ss = 0;
    if (live) for (int64_t i = t; i < D; i += GROUP) { const double d = (double)p[i] - mean; ss += d * d; }
    ss = group_sum<GROUP>(ss, scratch);
    const double inv = 1.0 / sqrt(ss / (double)D + eps);
    if (live) {
      if (t == 0) { mean_out[r] = static_cast<T>(mean); inv_out[r] = static_cast<T>(inv); }
      T* q = y + r * D;
      for (int64_t i = t; i < D; i += GROUP) {
        double v = ((double)p[i] - mean) * inv;
        if (w) v *= (double)w[i];
        if (b) v += (double)b[i];
        q[i] = static_cast<T>(v);
      }
    }
  }
}

template <typename T>
void ln_typed(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const TArg& x = in[0];
  const Opt o = optional_inputs(in, 1, at, false);
  const int64_t D = at.i("d"), R = D > 0 ? x.numel() / D : 0;
  const double eps = at.num("eps");
  if (R == 0) return;
  if (D > 1024) {
    KLAUNCH((ln_fwd_k<T, kThreads>), (unsigned)std::min<int64_t>(R, 65535), kThreads, 0, 0)(x.ptr<T>(), opt_ptr<T>(o.weight), opt_ptr<T>(o.bias), out[0].ptr<T>(), out[1].ptr<T>(), out[2].ptr<T>(), R, D, eps);
  } else {
    KLAUNCH((ln_fwd_k<T, 32>), (unsigned)std::min<int64_t>(ceil_div64(R, kThreads / 32), 65535), kThreads, 0, 0)(x.ptr<T>(), opt_ptr<T>(o.weight), opt_ptr<T>(o.bias), out[0].ptr<T>(), out[1].ptr<T>(), out[2].ptr<T>(), R, D, eps);
  }
  check_launch("layer_norm");
}

// in: x [..., D], weight? [D], bias? [D]; out: y, mean [rows], invstd [rows]; attrs: d, eps.
void layer_norm_cuda(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  SC_FLOAT_DISPATCH(in[0].dtype, T, ln_typed<T>(in, out, at));
}

// dx per row: iv * (gw - mean(gw) - xhat * mean(gw * xhat)), gw = g * w.
template <typename T, int GROUP>
__global__ void ln_bwd_dx_k(const T* __restrict__ g, const T* __restrict__ x, const T* __restrict__ w,
                            const T* __restrict__ mean, const T* __restrict__ inv, T* __restrict__ dx, int64_t R,
                            int64_t D) {
  __shared__ double scratch[32];
  const int per_block = blockDim.x / GROUP;
  const int t = threadIdx.x % GROUP;
  const int64_t first = (int64_t)blockIdx.x * per_block, stride = (int64_t)gridDim.x * per_block;
  for (int64_t r0 = first; r0 < R; r0 += stride) {
    const int64_t r = r0 + threadIdx.x / GROUP;
    const bool live = r < R;
    const int64_t rr = live ? r : 0;
    const T* gr = g + rr * D;
    const T* xr = x + rr * D;
    const double m = mean[rr], iv = inv[rr];
    double s1 = 0, s2 = 0;
    if (live) {
      for (int64_t i = t; i < D; i += GROUP) {
        const double gw = w ? (double)gr[i] * (double)w[i] : (double)gr[i];
        s1 += gw;
        s2 += gw * ((double)xr[i] - m) * iv;
      }
    }
    s1 = group_sum<GROUP>(s1, scratch) / (double)D;
    s2 = group_sum<GROUP>(s2, scratch) / (double)D;
    if (live) {
      T* q = dx + r * D;
      for (int64_t i = t; i < D; i += GROUP) {
        const double gw = w ? (double)gr[i] * (double)w[i] : (double)gr[i];
        q[i] = static_cast<T>(iv * (gw - s1 - ((double)xr[i] - m) * iv * s2));
      }
    }
  }
}

constexpr int kLnRowsPerBlock = kThreads / 32;  // 8 row lanes x 32 columns

// Block (column tile bx, row split by): column c = bx*32 + lane, rows by*rchunk + ty, stepping
// by 8; the 8 row lanes of a column are combined in shared memory in a fixed order.
template <typename T>
__global__ void ln_bwd_param_partial_k(const T* __restrict__ g, const T* __restrict__ x, const T* __restrict__ mean,
                                       const T* __restrict__ inv, double* __restrict__ pw, double* __restrict__ pb,
                                       int64_t R, int64_t D, int64_t rchunk) {
  __shared__ double sw[kLnRowsPerBlock][33];
  __shared__ double sb[kLnRowsPerBlock][33];
  const int lane = threadIdx.x & 31, ty = threadIdx.x >> 5;
  const int64_t c = (int64_t)blockIdx.x * 32 + lane;
  const int64_t r0 = (int64_t)blockIdx.y * rchunk;
  const int64_t r1 = r0 + rchunk < R ? r0 + rchunk : R;
  double aw = 0, ab = 0;
  if (c < D) {
    for (int64_t r = r0 + ty; r < r1; r += kLnRowsPerBlock) {
      const double gv = g[r * D + c];
      aw += gv * ((double)x[r * D + c] - (double)mean[r]) * (double)inv[r];
      ab += gv;
    }
  }
  sw[ty][lane] = aw;
  sb[ty][lane] = ab;
  __syncthreads();
  if (ty == 0 && c < D) {
    double tw = 0, tb = 0;
    SC_UNROLL for (int k = 0; k < kLnRowsPerBlock; ++k) { tw += sw[k][lane]; tb += sb[k][lane]; }
    pw[(int64_t)blockIdx.y * D + c] = tw;
    pb[(int64_t)blockIdx.y * D + c] = tb;
  }
}

template <typename T>
__global__ void ln_bwd_param_final_k(const double* __restrict__ pw, const double* __restrict__ pb, T* __restrict__ dw,
                                     T* __restrict__ db, int64_t D, int64_t P) {
  SC_GRID_STRIDE(c, D) {
    double tw = 0, tb = 0;
    for (int64_t p = 0; p < P; ++p) { tw += pw[p * D + c]; tb += pb[p * D + c]; }
    dw[c] = static_cast<T>(tw);
    db[c] = static_cast<T>(tb);
  }
}

template <typename T>
void ln_bwd_typed(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const norm::LnBackward<T> a = norm::ln_backward_inputs<T>(in, at);
  const T *w = a.w, *mean = a.mean, *inv = a.inv;
  const int64_t D = a.D, R = a.R;
  if (D <= 0) return;
  if (R > 0) {
    if (D > 1024) {
      KLAUNCH((ln_bwd_dx_k<T, kThreads>), (unsigned)std::min<int64_t>(R, 65535), kThreads, 0, 0)(a.g, a.x, w, mean, inv, out[0].ptr<T>(), R, D);
    } else {
      KLAUNCH((ln_bwd_dx_k<T, 32>), (unsigned)std::min<int64_t>(ceil_div64(R, kThreads / 32), 65535), kThreads, 0, 0)(a.g, a.x, w, mean, inv, out[0].ptr<T>(), R, D);
    }
    check_launch("layer_norm_backward");
  }
  // Parameter gradients: column sums over rows, split over row chunks when there are few columns.
  const int64_t tiles = ceil_div64(D, 32);
  int64_t P = 1;
  if (tiles < 264) P = std::max<int64_t>(1, std::min<int64_t>(264 / tiles, R / 64));
  P = std::min<int64_t>(P, 65535);
  const int64_t rchunk = std::max<int64_t>(1, ceil_div64(std::max<int64_t>(R, 1), P));
  Scratch spart(sizeof(double) * D * P * 2);
  double* pw = spart.as<double>();
  double* pb = pw + D * P;
  KLAUNCH(ln_bwd_param_partial_k<T>, dim3((unsigned)tiles, (unsigned)P), kThreads, 0, 0)(a.g, a.x, mean, inv, pw, pb, R, D, rchunk);
  check_launch("layer_norm_backward");
  KLAUNCH(ln_bwd_param_final_k<T>, blocks_for(D), kThreads, 0, 0)(pw, pb, out[1].ptr<T>(), out[2].ptr<T>(), D, P);
  check_launch("layer_norm_backward");
}

// in: gy, x, weight? (hasWeight), mean, invstd; out: dx, dweight [D], dbias [D]; attrs: d, hasWeight.
void layer_norm_backward_cuda(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  SC_FLOAT_DISPATCH(in[0].dtype, T, ln_bwd_typed<T>(in, out, at));
}

// ---- group norm (fused: per-channel affine, optional ReLU) ------------------------------------
//
// Rows are (image, group): Cg = C / G channel planes of S values, contiguous. One block per row
// (grid-stride over rows): two block reductions for the statistics, then the affine. Backward:
// per channel of the row, block sums of g and g * xhat (written as per-(image, channel)
// partials, added over images in order by layer norm's ln_bwd_param_final_k), then dx over the
// row.

template <typename T>
__global__ void gn_fwd_k(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b, T* __restrict__ y,
                         T* __restrict__ mean_out, T* __restrict__ inv_out, int64_t R, int64_t G, int64_t Cg,
                         int64_t S, double eps, bool relu) {
  __shared__ double scratch[32];
  const int64_t D = Cg * S;
  for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
    const T* p = x + r * D;
    double s = 0;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) s += p[i];
    const double mean = block_sum(s, scratch) / (double)D;
    double ss = 0;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) { const double d = (double)p[i] - mean; ss += d * d; }
    const double inv = 1.0 / sqrt(block_sum(ss, scratch) / (double)D + eps);
    if (threadIdx.x == 0) { mean_out[r] = static_cast<T>(mean); inv_out[r] = static_cast<T>(inv); }
    const int64_t c0 = (r % G) * Cg;
    T* q = y + r * D;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
      const int64_t c = c0 + i / S;
      double v = ((double)p[i] - mean) * inv;
      if (w) v *= (double)w[c];
      if (b) v += (double)b[c];
      q[i] = static_cast<T>(relu && v < 0 ? 0.0 : v);
    }
  }
}

template <typename T>
__global__ void gn_bwd_k(const T* __restrict__ g, const T* __restrict__ x, const T* __restrict__ w,
                         const T* __restrict__ mean, const T* __restrict__ inv, const T* __restrict__ yout,
                         T* __restrict__ dx, double* __restrict__ pw, double* __restrict__ pb, int64_t R, int64_t G,
                         int64_t C, int64_t Cg, int64_t S) {
  __shared__ double scratch[32];
  const int64_t D = Cg * S;
  for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
    const int64_t n = r / G, c0 = (r % G) * Cg;
    const double m = mean[r], iv = inv[r];
    const T* gr = g + r * D;
    const T* xr = x + r * D;
    const T* yr = yout ? yout + r * D : nullptr;  // relu'(v) from the output: y > 0 where v > 0
    // With gh = g * w[c]: dx = iv (gh - mean(gh) - xhat mean(gh xhat)), means over the row.
    double sgh = 0, sghx = 0;
    for (int64_t ci = 0; ci < Cg; ++ci) {
      double sg = 0, sgx = 0;
      for (int64_t i = ci * S + threadIdx.x; i < (ci + 1) * S; i += blockDim.x) {
        const double gv = yr && !((double)yr[i] > 0) ? 0.0 : (double)gr[i];
        sg += gv;
        sgx += gv * ((double)xr[i] - m) * iv;
      }
      sg = block_sum(sg, scratch);
      sgx = block_sum(sgx, scratch);
      const double wc = w ? (double)w[c0 + ci] : 1.0;
      sgh += wc * sg;
      sghx += wc * sgx;
      if (threadIdx.x == 0) { pw[n * C + c0 + ci] = sgx; pb[n * C + c0 + ci] = sg; }
    }
    const double ma = sgh / (double)D, mb = sghx / (double)D;
    T* q = dx + r * D;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
      const double wc = w ? (double)w[c0 + i / S] : 1.0;
      const double gv = yr && !((double)yr[i] > 0) ? 0.0 : (double)gr[i];
      q[i] = static_cast<T>(iv * (wc * gv - ma - ((double)xr[i] - m) * iv * mb));
    }
  }
}

template <typename T>
void gn_typed(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const TArg& x = in[0];
  const Opt o = optional_inputs(in, 1, at, false);
  const norm::GnShape s = norm::gn_shape(x, at, "group_norm_fused");
  const int64_t R = s.N * s.G;
  if (R == 0 || x.numel() == 0) return;
  KLAUNCH(gn_fwd_k<T>, (unsigned)std::min<int64_t>(R, 65535), kThreads, 0, 0)(x.ptr<T>(), opt_ptr<T>(o.weight), opt_ptr<T>(o.bias), out[0].ptr<T>(), out[1].ptr<T>(), out[2].ptr<T>(), R, s.G, s.Cg, s.S, at.num("eps"), s.relu);
  check_launch("group_norm_fused");
}

// in: x [N, C, *], weight? [C], bias? [C]; out: y, mean [N * G], invstd [N * G]; attrs: groups,
// eps, hasWeight, hasBias, post ("relu" or "none").
void group_norm_fused_cuda(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  SC_FLOAT_DISPATCH(in[0].dtype, T, gn_typed<T>(in, out, at));
}

template <typename T>
void gn_bwd_typed(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const norm::GnBackward<T> a = norm::gn_backward_inputs<T>(in, at);
  const norm::GnShape& s = a.s;
  const int64_t R = s.N * s.G;
  if (s.C == 0) return;
  Scratch spart(sizeof(double) * std::max<int64_t>(1, s.N * s.C) * 2);
  double* pw = spart.as<double>();
  double* pb = pw + s.N * s.C;
  if (R > 0 && in[1].numel() > 0) {
    KLAUNCH(gn_bwd_k<T>, (unsigned)std::min<int64_t>(R, 65535), kThreads, 0, 0)(a.g, a.x, a.w, a.mean, a.inv, a.y, out[0].ptr<T>(), pw, pb, R, s.G, s.C, s.Cg, s.S);
    check_launch("group_norm_fused_backward");
  }
  // dweight / dbias: the per-image partials added in order, as layer norm's per-chunk ones.
  KLAUNCH(ln_bwd_param_final_k<T>, blocks_for(s.C), kThreads, 0, 0)(pw, pb, out[1].ptr<T>(), out[2].ptr<T>(), s.C, s.N);
  check_launch("group_norm_fused_backward");
}

// in: gy, x, weight? (hasWeight), mean, invstd, then y with post relu; out: dx, dweight [C],
// dbias [C]; attrs: groups, hasWeight, post.
void group_norm_fused_backward_cuda(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  SC_FLOAT_DISPATCH(in[0].dtype, T, gn_bwd_typed<T>(in, out, at));
}

}  // namespace

SC_KERNEL("batch_norm", cuda, batch_norm_cuda);
SC_KERNEL("batch_norm_backward", cuda, batch_norm_backward_cuda);
SC_KERNEL("layer_norm", cuda, layer_norm_cuda);
SC_KERNEL("layer_norm_backward", cuda, layer_norm_backward_cuda);
SC_KERNEL("group_norm_fused", cuda, group_norm_fused_cuda);
SC_KERNEL("group_norm_fused_backward", cuda, group_norm_fused_backward_cuda);

}  // namespace cu
}  // namespace sc
