// Fused scaled dot-product attention and its backward on the CUDA backend (mirror of
// native/kernels/sdpa.cc):
//   S = q k^T * scale,  P = softmax_rows(S),  out = P v,  lse = row log-sum-exp of S;
//   q [B, H, Lq, D], k [B, H, Lk, D], v [B, H, Lk, Dv].
//
// Flash-style, one block per ((b, h), tile of kRows query rows), one warp per query row. The
// block stages tiles of `tile` keys (K and V rows) in shared memory, shared by its warps; each
// lane scores one key of the tile against the warp's query row (held in shared memory), the
// tile's maximum and sum come from xor-shuffle all-reductions, and the running output row
// (shared, lanes over the feature dimension) is rescaled online as the maximum grows. Only the
// row log-sum-exp is written besides the output; nothing of size Lq x Lk exists.
//
// The backward recomputes probabilities from the saved log-sum-exp, in two kernels with
// disjoint outputs (no atomics):
//   rows (warp per query row n): delta_n = dO_n . O_n (kept in scratch), then over key tiles
//        dS[n, m] = P[n, m] (dO_n . V_m - delta_n),  dQ_n = scale * sum_m dS[n, m] K_m;
//   keys (warp per key row m): over tiles of query rows (Q and dO staged in shared memory)
//        dV_m = sum_n P[n, m] dO_n,  dK_m = scale * sum_n dS[n, m] Q_n.
// Tile rows in shared memory have an odd stride, so lanes reading different rows of a tile
// hit different banks.
#include "cuda/compat.cuh"
#include "cuda/common.cuh"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace sc {
namespace {

constexpr int kRows = 4;  // warps (query or key rows) per block
constexpr int kBlock = kRows * 32;

struct Geo {
  int Lq, Lk, D, Dv;
  int ldk, ldv;  // padded (odd) strides of the staged tile rows: D and Dv wide
  int tile;      // rows per staged tile (1..32)
  int tiles;     // row tiles of kRows per (b, h): over Lq (forward, rows pass) or Lk (keys pass)
};

__host__ __device__ inline int odd(int n) { return n | 1; }

Geo geometry(const TArg& q, const TArg& k, const TArg& v, const char* who) {
  const std::string w(who);
  if (q.ndim != 4 || k.ndim != 4 || v.ndim != 4) throw KernelError(w + ": q, k, v must be 4-D [B, H, L, D]");
  for (int d = 0; d < 2; ++d)
    if (k.shape[d] != q.shape[d] || v.shape[d] != q.shape[d]) throw KernelError(w + ": batch / head sizes of q, k, v differ");
  if (k.shape[3] != q.shape[3] || v.shape[2] != k.shape[2]) throw KernelError(w + ": k must be [B, H, Lk, D] and v [B, H, Lk, Dv]");
  if (k.shape[2] < 1) throw KernelError(w + ": no keys (Lk = 0)");
  if (q.shape[2] > (1 << 30) || k.shape[2] > (1 << 30) || q.shape[3] > (1 << 16) || v.shape[3] > (1 << 16))
    throw KernelError(w + ": sequence or feature size too large for the CUDA kernel");
  Geo g{};
  g.Lq = (int)q.shape[2];
  g.Lk = (int)k.shape[2];
  g.D = (int)q.shape[3];
  g.Dv = (int)v.shape[3];
  g.ldk = odd(g.D);
  g.ldv = odd(g.Dv);
  return g;
}

// The largest tile (32, 16, ..., 1 rows) whose shared memory, per_tile_row * tile + fixed
// elements, fits; throws naming the feature sizes otherwise.
template <typename T>
int pick_tile(size_t per_tile_row, size_t fixed, const char* who, const Geo& g) {
  for (int t = 32; t >= 1; t /= 2)
    if (sizeof(T) * (per_tile_row * t + fixed) <= cu::kSmemLimit) return t;
  throw KernelError(std::string(who) + ": feature sizes D = " + std::to_string(g.D) + ", Dv = " + std::to_string(g.Dv) +
                    " too large for the CUDA kernel's shared memory");
}

// a (shared, contiguous) . b (shared, contiguous), n long; two chains for latency.
template <typename T>
__device__ __forceinline__ T dot_ss(const T* a, const T* b, int n) {
  T s0 = 0, s1 = 0;
  int i = 0;
  for (; i + 2 <= n; i += 2) {
    s0 += a[i] * b[i];
    s1 += a[i + 1] * b[i + 1];
  }
  if (i < n) s0 += a[i] * b[i];
  return s0 + s1;
}

// Stages rows [r0, r0 + cnt) of a [rows, width] matrix into shared dst with row stride ld.
template <typename T>
__device__ __forceinline__ void stage(T* dst, const T* __restrict__ src, int r0, int cnt, int width, int ld) {
  const T* s = src + (int64_t)r0 * width;
  for (int e = threadIdx.x; e < cnt * width; e += blockDim.x) {
    const int j = e / width, i = e - j * width;
    dst[j * ld + i] = s[e];
  }
}

// acc[i] = acc[i] * corr + sum_{j < cnt} w[j] * rows[j * ld + i], lanes over i < width.
template <typename T>
__device__ __forceinline__ void axpy_rows(T* acc, T corr, const T* w, const T* rows, int cnt, int width, int ld, int lane) {
  for (int i = lane; i < width; i += 32) {
    T a = 0;
    const T* p = rows + i;
    for (int j = 0; j < cnt; ++j, p += ld) a += w[j] * *p;
    acc[i] = acc[i] * corr + a;
  }
}

// ---------------------------------------------------------------- forward
// Shared: K tile [tile][ldk], V tile [tile][ldv], then per warp: q[D], acc[Dv], p[32].
template <typename T>
__global__ void sdpa_fwd_k(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                           T* __restrict__ out, T* __restrict__ lse, Geo g, T scale) {
  SC_DYN_SMEM(T, sm);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t bh = blockIdx.x / g.tiles;
  const int n = (int)(blockIdx.x % g.tiles) * kRows + warp;
  const bool active = n < g.Lq;  // idle warps still stage tiles and reach every barrier
  const int D = g.D, Dv = g.Dv, T_ = g.tile;
  T* ks = sm;
  T* vs = ks + T_ * g.ldk;
  T* qs = vs + T_ * g.ldv + warp * (D + Dv + 32);
  T* acc = qs + D;
  T* pb = acc + Dv;
  const int64_t r = bh * g.Lq + n;
  const T* kb = k + bh * g.Lk * D;
  const T* vb = v + bh * g.Lk * Dv;
  if (active) {
    for (int i = lane; i < D; i += 32) qs[i] = q[r * D + i];
    for (int i = lane; i < Dv; i += 32) acc[i] = 0;
  }
  T mx = -cu::d_inf<T>(), l = 0;
  for (int c0 = 0; c0 < g.Lk; c0 += T_) {
    const int cnt = min(T_, g.Lk - c0);
    __syncthreads();  // the previous tile is consumed
    stage(ks, kb, c0, cnt, D, g.ldk);
    stage(vs, vb, c0, cnt, Dv, g.ldv);
    __syncthreads();
    if (active) {
      const T s = lane < cnt ? dot_ss(qs, ks + lane * g.ldk, D) * scale : -cu::d_inf<T>();
      const T mnew = cu::d_max(mx, cu::warp_allmax(s));  // finite: the tile has >= 1 key
      const T p = lane < cnt ? cu::d_exp(s - mnew) : T(0);
      const T corr = cu::d_exp(mx - mnew);  // 0 on the first tile (mx = -inf)
      l = l * corr + cu::warp_allsum(p);
      pb[lane] = p;
      __syncwarp();
      axpy_rows(acc, corr, pb, vs, cnt, Dv, g.ldv, lane);
      __syncwarp();
      mx = mnew;
    }
  }
  if (active) {
    const T inv = T(1) / l;
    for (int i = lane; i < Dv; i += 32) out[r * Dv + i] = acc[i] * inv;
    if (lane == 0) lse[r] = mx + log(l);
  }
}

template <typename T>
void forward_typed(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const char* who = "scaled_dot_product_attention";
  Geo g = geometry(in[0], in[1], in[2], who);
  const int64_t BH = in[0].shape[0] * in[0].shape[1];
  if (BH == 0 || g.Lq == 0) return;
  g.tile = pick_tile<T>(g.ldk + g.ldv, (size_t)kRows * (g.D + g.Dv + 32), who, g);
  g.tiles = (g.Lq + kRows - 1) / kRows;
  const size_t smem = sizeof(T) * ((size_t)g.tile * (g.ldk + g.ldv) + (size_t)kRows * (g.D + g.Dv + 32));
  if (BH * g.tiles > 0x7fffffff) throw KernelError("scaled_dot_product_attention: too many query rows for one launch");
  KLAUNCH(sdpa_fwd_k<T>, dim3((unsigned)(BH * g.tiles)), kBlock, smem, 0)
  (in[0].ptr<T>(), in[1].ptr<T>(), in[2].ptr<T>(), out[0].ptr<T>(), out[1].ptr<T>(), g, (T)at.num("scale"));
  cu::check_launch(who);
}

void sdpa_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  SC_FLOAT_DISPATCH(in[0].dtype, T, forward_typed<T>(in, out, at));
}
SC_KERNEL("scaled_dot_product_attention", cuda, sdpa_kernel);

// ---------------------------------------------------------------- backward, rows pass
// Shared: K tile, V tile, then per warp: q[D], dO[Dv], dq accumulator[D], dS[32].
template <typename T>
__global__ void sdpa_bwd_rows_k(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                                const T* __restrict__ o, const T* __restrict__ lse, const T* __restrict__ go,
                                T* __restrict__ dq, T* __restrict__ delta, Geo g, T scale) {
  SC_DYN_SMEM(T, sm);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t bh = blockIdx.x / g.tiles;
  const int n = (int)(blockIdx.x % g.tiles) * kRows + warp;
  const bool active = n < g.Lq;
  const int D = g.D, Dv = g.Dv, T_ = g.tile;
  T* ks = sm;
  T* vs = ks + T_ * g.ldk;
  T* qs = vs + T_ * g.ldv + warp * (2 * D + Dv + 32);
  T* gs = qs + D;
  T* acc = gs + Dv;
  T* wb = acc + D;
  const int64_t r = bh * g.Lq + n;
  const T* kb = k + bh * g.Lk * D;
  const T* vb = v + bh * g.Lk * Dv;
  T dl = 0, ln = 0;
  if (active) {
    for (int i = lane; i < D; i += 32) {
      qs[i] = q[r * D + i];
      acc[i] = 0;
    }
    for (int i = lane; i < Dv; i += 32) {
      const T gi = go[r * Dv + i];
      gs[i] = gi;
      dl += gi * o[r * Dv + i];
    }
    dl = cu::warp_allsum(dl);
    ln = lse[r];
    if (lane == 0) delta[r] = dl;
  }
  for (int c0 = 0; c0 < g.Lk; c0 += T_) {
    const int cnt = min(T_, g.Lk - c0);
    __syncthreads();
    stage(ks, kb, c0, cnt, D, g.ldk);
    stage(vs, vb, c0, cnt, Dv, g.ldv);
    __syncthreads();
    if (active) {
      T ds = 0;
      if (lane < cnt) {
        const T p = cu::d_exp(dot_ss(qs, ks + lane * g.ldk, D) * scale - ln);
        ds = p * (dot_ss(gs, vs + lane * g.ldv, Dv) - dl);
      }
      wb[lane] = ds;
      __syncwarp();
      axpy_rows(acc, T(1), wb, ks, cnt, D, g.ldk, lane);
      __syncwarp();
    }
  }
  if (active)
    for (int i = lane; i < D; i += 32) dq[r * D + i] = acc[i] * scale;
}

// ---------------------------------------------------------------- backward, keys pass
// Shared: Q tile [tile][ldk], dO tile [tile][ldv], then per warp: k[D], v[Dv], dk acc[D],
// dv acc[Dv], P[32], dS[32].
template <typename T>
__global__ void sdpa_bwd_keys_k(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                                const T* __restrict__ lse, const T* __restrict__ go, const T* __restrict__ delta,
                                T* __restrict__ dk, T* __restrict__ dv, Geo g, T scale) {
  SC_DYN_SMEM(T, sm);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t bh = blockIdx.x / g.tiles;
  const int m = (int)(blockIdx.x % g.tiles) * kRows + warp;
  const bool active = m < g.Lk;
  const int D = g.D, Dv = g.Dv, T_ = g.tile;
  T* qs = sm;
  T* gs = qs + T_ * g.ldk;
  T* kr = gs + T_ * g.ldv + warp * (2 * D + 2 * Dv + 64);
  T* vr = kr + D;
  T* ak = vr + Dv;
  T* av = ak + D;
  T* wp = av + Dv;
  T* wd = wp + 32;
  const int64_t r = bh * g.Lk + m;
  const T* qb = q + bh * g.Lq * D;
  const T* gb = go + bh * g.Lq * Dv;
  const T* lb = lse + bh * g.Lq;
  const T* db = delta + bh * g.Lq;
  if (active) {
    for (int i = lane; i < D; i += 32) {
      kr[i] = k[r * D + i];
      ak[i] = 0;
    }
    for (int i = lane; i < Dv; i += 32) {
      vr[i] = v[r * Dv + i];
      av[i] = 0;
    }
  }
  for (int c0 = 0; c0 < g.Lq; c0 += T_) {
    const int cnt = min(T_, g.Lq - c0);
    __syncthreads();
    stage(qs, qb, c0, cnt, D, g.ldk);
    stage(gs, gb, c0, cnt, Dv, g.ldv);
    __syncthreads();
    if (active) {
      T p = 0, ds = 0;
      if (lane < cnt) {
        const int n = c0 + lane;
        p = cu::d_exp(dot_ss(kr, qs + lane * g.ldk, D) * scale - lb[n]);
        ds = p * (dot_ss(vr, gs + lane * g.ldv, Dv) - db[n]);
      }
      wp[lane] = p;
      wd[lane] = ds;
      __syncwarp();
      axpy_rows(av, T(1), wp, gs, cnt, Dv, g.ldv, lane);
      axpy_rows(ak, T(1), wd, qs, cnt, D, g.ldk, lane);
      __syncwarp();
    }
  }
  if (active) {
    for (int i = lane; i < D; i += 32) dk[r * D + i] = ak[i] * scale;
    for (int i = lane; i < Dv; i += 32) dv[r * Dv + i] = av[i];
  }
}

template <typename T>
void backward_typed(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const char* who = "scaled_dot_product_attention_backward";
  Geo g = geometry(in[0], in[1], in[2], who);
  const int64_t BH = in[0].shape[0] * in[0].shape[1];
  if (BH == 0) return;
  const T scale = (T)at.num("scale");
  const T *q = in[0].ptr<T>(), *k = in[1].ptr<T>(), *v = in[2].ptr<T>(), *o = in[3].ptr<T>();
  const T *lse = in[4].ptr<T>(), *go = in[5].ptr<T>();
  if (BH * ((std::max(g.Lq, g.Lk) + kRows - 1) / kRows) > 0x7fffffff)
    throw KernelError("scaled_dot_product_attention_backward: too many rows for one launch");
  cu::Scratch delta(sizeof(T) * (size_t)(BH * g.Lq));
  if (g.Lq > 0) {
    Geo g1 = g;
    g1.tile = pick_tile<T>(g.ldk + g.ldv, (size_t)kRows * (2 * g.D + g.Dv + 32), who, g);
    g1.tiles = (g.Lq + kRows - 1) / kRows;
    const size_t smem = sizeof(T) * ((size_t)g1.tile * (g.ldk + g.ldv) + (size_t)kRows * (2 * g.D + g.Dv + 32));
    KLAUNCH(sdpa_bwd_rows_k<T>, dim3((unsigned)(BH * g1.tiles)), kBlock, smem, 0)
    (q, k, v, o, lse, go, out[0].ptr<T>(), delta.as<T>(), g1, scale);
    cu::check_launch("scaled_dot_product_attention_backward (rows)");
  }
  Geo g2 = g;
  g2.tile = pick_tile<T>(g.ldk + g.ldv, (size_t)kRows * (2 * g.D + 2 * g.Dv + 64), who, g);
  g2.tiles = (g.Lk + kRows - 1) / kRows;
  const size_t smem2 = sizeof(T) * ((size_t)g2.tile * (g.ldk + g.ldv) + (size_t)kRows * (2 * g.D + 2 * g.Dv + 64));
  KLAUNCH(sdpa_bwd_keys_k<T>, dim3((unsigned)(BH * g2.tiles)), kBlock, smem2, 0)
  (q, k, v, lse, go, delta.as<T>(), out[1].ptr<T>(), out[2].ptr<T>(), g2, scale);
  cu::check_launch("scaled_dot_product_attention_backward (keys)");
}

void sdpa_backward_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  SC_FLOAT_DISPATCH(in[0].dtype, T, backward_typed<T>(in, out, at));
}
SC_KERNEL("scaled_dot_product_attention_backward", cuda, sdpa_backward_kernel);

}  // namespace
}  // namespace sc
