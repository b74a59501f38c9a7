// Fused Manhattan-decay attention (MaSA) and its backward on the CUDA backend (mirror
// native/kernels/decay_attention.cc):
//   S = q k^T / sqrt(D),  P = softmax_rows(S),  A = P * Dm,  out = A v,
//   Dm[n, m] = gamma^(|y_n - y_m| + |x_n - x_m|)  on a height x width grid.
//
// One block per (sequence, tile of kRows query rows); one warp per row. The block first builds
// the table gamma^d (d < H + W - 1) in shared memory. A warp then
//   1. sweeps the keys (lanes over m): scores into its shared row S[L] (when the block's rows fit
//      in shared memory), online max / sum per lane, merged with xor-shuffle all-reductions;
//   2. walks the keys in chunks of 32: each lane turns one score into a weight, the chunk's
//      weights go to shared memory, and lanes over the feature dimension accumulate weight x V.
// When L is too large for a shared score row (the multi-pass path), sweep 2 recomputes the
// scores instead of reading them. Nothing of size L x L is stored.
//
// The backward recomputes rows as the CPU kernel does, in two passes with disjoint outputs:
//   pass 1 (warp per query row n): max, 1/sum, delta_n = sum_m dP P (saved per row, scratch),
//                                   dQ_n = sum_m dS[n, m] K_m / sqrt(D);
//   pass 2 (warp per key row m):    dV_m = sum_n A[n, m] dO_n,  dK_m = sum_n dS[n, m] Q_n / sqrt(D).
// No atomics anywhere.
#include "cuda/compat.cuh"
#include "cuda/common.cuh"

#include <cmath>
#include <vector>

namespace sc {
namespace {

constexpr int kRows = 4;  // warps (rows) per block
constexpr int kBlock = kRows * 32;

struct Geo {
  int L, D, H, W;
  int tiles;  // query-row tiles per sequence
};

Geo geometry(const TArg& q, const TArg& k, const TArg& v, const Attrs& at) {
  if (q.ndim != 3 || k.ndim != 3 || v.ndim != 3) throw KernelError("decay_attention: q, k, v must be 3-D [B, L, D]");
  const int64_t L = q.shape[1], D = q.shape[2], H = at.i("height"), W = at.i("width");
  if (H < 1 || W < 1 || H * W != L)
    throw KernelError("decay_attention: height*width must equal the sequence length " + std::to_string(L));
  for (const TArg* t : {&k, &v})
    if (t->shape[0] != q.shape[0] || t->shape[1] != L || t->shape[2] != D)
      throw KernelError("decay_attention: q, k, v shapes differ");
  if (L > (1 << 30) || D > (1 << 20)) throw KernelError("decay_attention: sequence or feature size too large");
  return {(int)L, (int)D, (int)H, (int)W, (int)((L + kRows - 1) / kRows)};
}

__host__ __device__ inline int round4(int n) { return (n + 3) & ~3; }

// gamma^d table (computed on the host with std::pow, as the CPU kernel) into shared pw[0, npw);
// the caller synchronises.
template <typename T>
__device__ __forceinline__ void build_pow_table(T* pw, int npw, const T* __restrict__ table) {
  for (int d = threadIdx.x; d < npw; d += blockDim.x) pw[d] = table[d];
}

// Device copy of gamma^d for d < H + W - 1.
template <typename T>
struct PowTable {
  cu::Scratch buf;
  PowTable(double gamma, int npw) : buf(sizeof(T) * npw) {
    std::vector<T> h(npw);
    for (int d = 0; d < npw; ++d) h[d] = (T)std::pow(gamma, (double)d);
    SC_CUDA_CHECK(cudaMemcpy(buf.p, h.data(), sizeof(T) * npw, cudaMemcpyHostToDevice));
  }
  const T* ptr() const { return buf.as<T>(); }
};

template <typename T>
__device__ __forceinline__ T decay(const T* pw, int yn, int xn, int m, int W) {
  const int ym = m / W, xm = m - ym * W;
  return pw[abs(yn - ym) + abs(xn - xm)];
}

// a (shared) . b (global), D long.
template <typename T>
__device__ __forceinline__ T dot_sg(const T* a, const T* __restrict__ b, int D) {
  T s0 = 0, s1 = 0;
  int i = 0;
  for (; i + 2 <= D; i += 2) {
    s0 += a[i] * b[i];
    s1 += a[i + 1] * b[i + 1];
  }
  if (i < D) s0 += a[i] * b[i];
  return s0 + s1;
}

// Online softmax statistics of one lane: running max and sum of exp(s - max).
template <typename T>
__device__ __forceinline__ void online_add(T& mx, T& sum, T s) {
  if (s > mx) {
    sum = sum * cu::d_exp(mx - s) + T(1);
    mx = s;
  } else {
    sum += cu::d_exp(s - mx);
  }
}
template <typename T>
__device__ __forceinline__ void online_merge(T& mx, T& sum) {
  const T M = cu::warp_allmax(mx);
  const T part = sum == T(0) ? T(0) : sum * cu::d_exp(mx - M);
  sum = cu::warp_allsum(part);
  mx = M;
}

// One chunk of a weighted sum of rows, shared by the forward and the dq pass: each lane brings
// the weight of row c0 + lane (0 past L) through the warp's buffer wb[32], then
//   acc[i] += sum_{j < min(32, L - c0)} wb[j] * rows[(c0 + j) * D + i]  over this lane's columns i.
template <typename T>
__device__ __forceinline__ void accumulate_weighted(T* acc, T* wb, T wgt, const T* rows, int c0, int L, int D, int lane) {
  wb[lane] = wgt;
  __syncwarp();
  const int cnt = min(32, L - c0);
  const T* rc = rows + (int64_t)c0 * D;
  for (int i = lane; i < D; i += 32) {
    T a = 0;
    const T* p = rc + i;
    for (int j = 0; j < cnt; ++j, p += D) a += wb[j] * *p;
    acc[i] += a;
  }
  __syncwarp();
}

// ---------------------------------------------------------------- forward
// Shared memory: pw[round4(H+W-1)], then per warp: q[D], acc[D], w[32], S[L] (when stored).
template <typename T>
__global__ void attn_fwd_k(const T* __restrict__ q, const T* __restrict__ k,
                                                     const T* __restrict__ v, T* __restrict__ out, Geo g,
                                                     const T* __restrict__ table, T scale, int stored) {
  SC_DYN_SMEM(T, sm);
  const int npw = g.H + g.W - 1;
  build_pow_table(sm, npw, table);
  __syncthreads();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int b = blockIdx.x / g.tiles;
  const int n = (blockIdx.x % g.tiles) * kRows + warp;
  if (n >= g.L) return;  // whole warp; no block barriers follow
  const int L = g.L, D = g.D, W = g.W;
  const int per_warp = 2 * D + 32 + (stored ? L : 0);
  T* qs = sm + round4(npw) + warp * per_warp;
  T* acc = qs + D;
  T* wb = acc + D;
  T* S = wb + 32;
  const int64_t r = (int64_t)b * L + n;
  const T* kb = k + (int64_t)b * L * D;
  const T* vb = v + (int64_t)b * L * D;
  for (int i = lane; i < D; i += 32) {
    qs[i] = q[r * D + i];
    acc[i] = 0;
  }
  __syncwarp();
  T mx = -cu::d_inf<T>(), sum = 0;
  for (int m = lane; m < L; m += 32) {
    const T s = dot_sg(qs, kb + (int64_t)m * D, D) * scale;
    if (stored) S[m] = s;
    online_add(mx, sum, s);
  }
  online_merge(mx, sum);
  const T inv = T(1) / sum;
  const int yn = n / W, xn = n - (n / W) * W;
  for (int c0 = 0; c0 < L; c0 += 32) {
    const int m = c0 + lane;
    T wgt = 0;
    if (m < L) {
      const T s = stored ? S[m] : dot_sg(qs, kb + (int64_t)m * D, D) * scale;
      wgt = cu::d_exp(s - mx) * inv * decay(sm, yn, xn, m, W);
    }
    accumulate_weighted(acc, wb, wgt, vb, c0, L, D, lane);
  }
  for (int i = lane; i < D; i += 32) out[r * D + i] = acc[i];
}

template <typename T>
size_t fwd_smem(const Geo& g, bool stored) {
  return sizeof(T) * (round4(g.H + g.W - 1) + kRows * (2 * g.D + 32 + (stored ? g.L : 0)));
}

template <typename T>
void forward_typed(const TArg& q, const TArg& k, const TArg& v, const TArg& out, const Attrs& at) {
  const Geo g = geometry(q, k, v, at);
  const int64_t B = q.shape[0];
  if (B == 0 || g.L == 0) return;
  bool stored = fwd_smem<T>(g, true) <= cu::kSmemLimit;
  const size_t smem = fwd_smem<T>(g, stored);
  if (smem > cu::kSmemLimit) throw KernelError("decay_attention: feature size D too large for the CUDA kernel");
  const T scale = (T)(1.0 / std::sqrt((double)g.D));
  const PowTable<T> table(at.num("gamma"), g.H + g.W - 1);
  KLAUNCH(attn_fwd_k<T>, dim3((unsigned)(B * g.tiles)), kBlock, smem, 0)
  (q.ptr<T>(), k.ptr<T>(), v.ptr<T>(), out.ptr<T>(), g, table.ptr(), scale, stored ? 1 : 0);
  cu::check_launch("decay_attention");
}

void decay_attention_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  SC_FLOAT_DISPATCH(in[0].dtype, T, forward_typed<T>(in[0], in[1], in[2], out[0], at));
}
SC_KERNEL("decay_attention", cuda, decay_attention_kernel);

// ---------------------------------------------------------------- backward pass 1
// Shared: pw, then per warp: q[D], dO[D], acc[D], w[32], S[L], dP[L] (the last two when stored).
template <typename T>
__global__ void attn_bwd_rows_k(const T* __restrict__ q, const T* __restrict__ k,
                                                          const T* __restrict__ v, const T* __restrict__ go,
                                                          T* __restrict__ dq, T* __restrict__ stats, Geo g,
                                                          const T* __restrict__ table, T scale, int stored) {
  SC_DYN_SMEM(T, sm);
  const int npw = g.H + g.W - 1;
  build_pow_table(sm, npw, table);
  __syncthreads();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int b = blockIdx.x / g.tiles;
  const int n = (blockIdx.x % g.tiles) * kRows + warp;
  if (n >= g.L) return;
  const int L = g.L, D = g.D, W = g.W;
  const int per_warp = 3 * D + 32 + (stored ? 2 * L : 0);
  T* qs = sm + round4(npw) + warp * per_warp;
  T* gs = qs + D;
  T* acc = gs + D;
  T* wb = acc + D;
  T* S = wb + 32;
  T* DP = S + L;
  const int64_t r = (int64_t)b * L + n;
  const T* kb = k + (int64_t)b * L * D;
  const T* vb = v + (int64_t)b * L * D;
  for (int i = lane; i < D; i += 32) {
    qs[i] = q[r * D + i];
    gs[i] = go[r * D + i];
    acc[i] = 0;
  }
  __syncwarp();
  const int yn = n / W, xn = n - (n / W) * W;
  T mx = -cu::d_inf<T>(), sum = 0;
  for (int m = lane; m < L; m += 32) {
    const T s = dot_sg(qs, kb + (int64_t)m * D, D) * scale;
    if (stored) {
      S[m] = s;
      DP[m] = dot_sg(gs, vb + (int64_t)m * D, D) * decay(sm, yn, xn, m, W);
    }
    online_add(mx, sum, s);
  }
  online_merge(mx, sum);
  const T inv = T(1) / sum;
  T dl = 0;
  for (int m = lane; m < L; m += 32) {
    const T s = stored ? S[m] : dot_sg(qs, kb + (int64_t)m * D, D) * scale;
    const T dp = stored ? DP[m] : dot_sg(gs, vb + (int64_t)m * D, D) * decay(sm, yn, xn, m, W);
    dl += dp * (cu::d_exp(s - mx) * inv);
  }
  dl = cu::warp_allsum(dl);
  for (int c0 = 0; c0 < L; c0 += 32) {
    const int m = c0 + lane;
    T wgt = 0;
    if (m < L) {
      const T s = stored ? S[m] : dot_sg(qs, kb + (int64_t)m * D, D) * scale;
      const T dp = stored ? DP[m] : dot_sg(gs, vb + (int64_t)m * D, D) * decay(sm, yn, xn, m, W);
      wgt = cu::d_exp(s - mx) * inv * (dp - dl);
    }
    accumulate_weighted(acc, wb, wgt, kb, c0, L, D, lane);
  }
  for (int i = lane; i < D; i += 32) dq[r * D + i] = acc[i] * scale;
  if (lane == 0) {
    stats[r * 3 + 0] = mx;
    stats[r * 3 + 1] = inv;
    stats[r * 3 + 2] = dl;
  }
}

// ---------------------------------------------------------------- backward pass 2
// Shared: pw, then per warp: k[D], v[D], accK[D], accV[D], a[32], ds[32].
template <typename T>
__global__ void attn_bwd_keys_k(const T* __restrict__ q, const T* __restrict__ k,
                                                          const T* __restrict__ v, const T* __restrict__ go,
                                                          const T* __restrict__ stats, T* __restrict__ dk,
                                                          T* __restrict__ dv, Geo g, const T* __restrict__ table, T scale) {
  SC_DYN_SMEM(T, sm);
  const int npw = g.H + g.W - 1;
  build_pow_table(sm, npw, table);
  __syncthreads();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int b = blockIdx.x / g.tiles;
  const int m = (blockIdx.x % g.tiles) * kRows + warp;
  if (m >= g.L) return;
  const int L = g.L, D = g.D, W = g.W;
  T* ks = sm + round4(npw) + warp * (4 * D + 64);
  T* vs = ks + D;
  T* ak = vs + D;
  T* av = ak + D;
  T* wa = av + D;
  T* wd = wa + 32;
  const int64_t r = (int64_t)b * L + m;
  const T* qb = q + (int64_t)b * L * D;
  const T* gb = go + (int64_t)b * L * D;
  const T* sb = stats + (int64_t)b * L * 3;
  for (int i = lane; i < D; i += 32) {
    ks[i] = k[r * D + i];
    vs[i] = v[r * D + i];
    ak[i] = 0;
    av[i] = 0;
  }
  __syncwarp();
  const int ym = m / W, xm = m - (m / W) * W;  // Dm is symmetric: column m is row m
  for (int c0 = 0; c0 < L; c0 += 32) {
    const int n = c0 + lane;
    T a = 0, ds = 0;
    if (n < L) {
      const T p = cu::d_exp(dot_sg(ks, qb + (int64_t)n * D, D) * scale - sb[n * 3]) * sb[n * 3 + 1];
      const T dm = decay(sm, ym, xm, n, W);
      ds = p * (dot_sg(vs, gb + (int64_t)n * D, D) * dm - sb[n * 3 + 2]);
      a = p * dm;
    }
    wa[lane] = a;
    wd[lane] = ds;
    __syncwarp();
    const int cnt = min(32, L - c0);
    const T* qc = qb + (int64_t)c0 * D;
    const T* gc = gb + (int64_t)c0 * D;
    for (int i = lane; i < D; i += 32) {
      T sv = 0, sk = 0;
      const T* gp = gc + i;
      const T* qp = qc + i;
      for (int j = 0; j < cnt; ++j, gp += D, qp += D) {
        sv += wa[j] * *gp;
        sk += wd[j] * *qp;
      }
      av[i] += sv;
      ak[i] += sk;
    }
    __syncwarp();
  }
  for (int i = lane; i < D; i += 32) {
    dk[r * D + i] = ak[i] * scale;
    dv[r * D + i] = av[i];
  }
}

template <typename T>
void backward_typed(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const TArg &q = in[0], &k = in[1], &v = in[2], &go = in[3];
  const Geo g = geometry(q, k, v, at);
  const int64_t B = q.shape[0];
  if (B == 0 || g.L == 0) return;
  const double gamma = at.num("gamma");
  const T scale = (T)(1.0 / std::sqrt((double)g.D));
  auto rows_smem = [&](bool st) { return sizeof(T) * (round4(g.H + g.W - 1) + kRows * (3 * g.D + 32 + (st ? 2 * g.L : 0))); };
  const bool stored = rows_smem(true) <= cu::kSmemLimit;
  const size_t smem1 = rows_smem(stored);
  const size_t smem2 = sizeof(T) * (round4(g.H + g.W - 1) + kRows * (4 * g.D + 64));
  if (smem1 > cu::kSmemLimit || smem2 > cu::kSmemLimit)
    throw KernelError("decay_attention_backward: feature size D too large for the CUDA kernel");
  cu::Scratch stats(sizeof(T) * 3 * B * g.L);
  const PowTable<T> table(gamma, g.H + g.W - 1);
  const dim3 grid((unsigned)(B * g.tiles));
  KLAUNCH(attn_bwd_rows_k<T>, grid, kBlock, smem1, 0)
  (q.ptr<T>(), k.ptr<T>(), v.ptr<T>(), go.ptr<T>(), out[0].ptr<T>(), stats.as<T>(), g, table.ptr(), scale, stored ? 1 : 0);
  cu::check_launch("decay_attention_backward (rows)");
  KLAUNCH(attn_bwd_keys_k<T>, grid, kBlock, smem2, 0)
  (q.ptr<T>(), k.ptr<T>(), v.ptr<T>(), go.ptr<T>(), stats.as<T>(), out[1].ptr<T>(), out[2].ptr<T>(), g, table.ptr(), scale);
  cu::check_launch("decay_attention_backward (keys)");
}

void decay_attention_backward_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  SC_FLOAT_DISPATCH(in[0].dtype, T, backward_typed<T>(in, out, at));
}
SC_KERNEL("decay_attention_backward", cuda, decay_attention_backward_kernel);

}  // namespace
}  // namespace sc
