// 2-D convolution on the CUDA backend (NCHW, contiguous), mirroring native/kernels/conv.cc:
// conv2d (optional bias), conv2d_backward_input, conv2d_backward_weight (optional bias grad).
//
// General convolutions are implicit GEMMs on the tiled kernel of tile_gemm.cuh (64x64x16 block
// tiles, 4x4 outputs per thread); the im2col gather happens while a tile is loaded into shared
// memory, so no column buffer exists. Per group g (gridDim.z):
//   forward          y[g]  (OCg x N*OH*OW)  = W[g] (OCg x Cg*KH*KW) * col(x)
//   backward input   gx[g] (Cg  x N*H*W)    = W[g]^T-gather (Cg x OCg*KH*KW) * gather(gy)
//                    (the transposed formulation: each input pixel gathers the output pixels it
//                    fed, skipping taps that fall between strides; no atomics, no col2im)
//   backward weight  gw[g] (OCg x Cg*KH*KW) = gy[g] (OCg x N*OH*OW) * col(x)^T, split-K over
//                    N*OH*OW: each block reduces one K slice of its 64x64 tile in registers and
//                    adds it to the small weight tensor with one atomicAdd per element.
// Depthwise (groups == C == OC) has dedicated kernels: one block per (image, channel) tile of
// 16 x 32 outputs with the input tile plus halo (any kernel size, stride, dilation) and the
// channel's taps in shared memory, 4 outputs per thread; the backward input gathers the
// output-gradient tile likewise; the weight gradient reduces tap by tap over a plane region per
// block (warp shuffles, partial sums in shared memory), then writes (or, when a channel's plane
// is split over several blocks, atomically adds) one value per weight element.
#include "cuda/compat.cuh"
#include "cuda/common.cuh"
#include "cuda/tile_gemm.cuh"
#include "kernels/conv_params.h"

#include <string>
#include <vector>

namespace sc {
namespace cu {
namespace {

// ---- parameters (host validation identical to the CPU kernels) ------------------------------

using conv::ConvP;

// Device-side copy of the geometry (32-bit; sizes are checked on the host).
struct CG {
  int N, C, H, W, OC, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw, Cg, OCg, KK, CKK, P;
};

CG to_cg(const ConvP& p) {
  const int64_t lim = (int64_t)1 << 30;
  if (p.N * p.C * p.HW > lim || p.N * p.OC * p.P > lim || p.OC * p.CKK > lim)
    throw KernelError("conv2d: tensor too large for the CUDA kernels (32-bit index math)");
  CG g;
  g.N = (int)p.N; g.C = (int)p.C; g.H = (int)p.H; g.W = (int)p.W; g.OC = (int)p.OC;
  g.KH = (int)p.KH; g.KW = (int)p.KW; g.OH = (int)p.OH; g.OW = (int)p.OW;
  g.sh = (int)p.sh; g.sw = (int)p.sw; g.ph = (int)p.ph; g.pw = (int)p.pw; g.dh = (int)p.dh; g.dw = (int)p.dw;
  g.Cg = (int)p.Cg; g.OCg = (int)p.OCg; g.KK = (int)(p.KH * p.KW); g.CKK = (int)p.CKK; g.P = (int)p.P;
  return g;
}

__device__ __forceinline__ int floor_div(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// im2col element: row k = (c, kh, kw) of group z, column n = (img, oh, ow).
template <typename T>
__device__ __forceinline__ T im2col_at(const CG& g, const T* x, int z, int k, int n) {
  const int c = k / g.KK, kk = k - c * g.KK, kh = kk / g.KW, kw = kk - kh * g.KW;
  const int img = n / g.P, pix = n - img * g.P, oh = pix / g.OW, ow = pix - oh * g.OW;
  const int ih = oh * g.sh - g.ph + kh * g.dh, iw = ow * g.sw - g.pw + kw * g.dw;
  if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) return T(0);
  return x[(((int64_t)img * g.C + z * g.Cg + c) * g.H + ih) * g.W + iw];
}

// ---- implicit GEMM operands -------------------------------------------------------------------

template <typename T>
struct FwdA {  // W[g] (OCg x CKK)
  const T* w;
  CG g;
  __device__ __forceinline__ T operator()(int z, int m, int k) const { return w[((int64_t)z * g.OCg + m) * g.CKK + k]; }
};
template <typename T>
struct FwdB {  // col(x) (CKK x N*P)
  const T* x;
  CG g;
  __device__ __forceinline__ T operator()(int z, int k, int n) const { return im2col_at<T>(g, x, z, k, n); }
};
template <typename T>
struct FwdStore {
  T* y;
  const T* bias;
  CG g;
  __device__ __forceinline__ void operator()(int z, int m, int n, T v) const {
    const int img = n / g.P, pix = n - img * g.P, oc = z * g.OCg + m;
    y[((int64_t)img * g.OC + oc) * g.P + pix] = bias ? v + bias[oc] : v;
  }
};

template <typename T>
struct BinA {  // A(c, (oc, kh, kw)) = w[g*OCg + oc][c][kh][kw]
  const T* w;
  CG g;
  __device__ __forceinline__ T operator()(int z, int m, int k) const {
    const int oc = k / g.KK, kk = k - oc * g.KK;
    return w[(((int64_t)z * g.OCg + oc) * g.Cg + m) * g.KK + kk];
  }
};
template <typename T>
struct BinB {  // B((oc, kh, kw), (img, ih, iw)) = gy[img][g*OCg + oc][oh][ow] where the tap lands
  const T* gy;
  CG g;
  __device__ __forceinline__ T operator()(int z, int k, int n) const {
    const int oc = k / g.KK, kk = k - oc * g.KK, kh = kk / g.KW, kw = kk - kh * g.KW;
    const int HW = g.H * g.W;
    const int img = n / HW, pix = n - img * HW, ih = pix / g.W, iw = pix - ih * g.W;
    const int th = ih + g.ph - kh * g.dh, tw = iw + g.pw - kw * g.dw;
    if (th < 0 || tw < 0) return T(0);
    const int oh = th / g.sh, ow = tw / g.sw;
    if (oh * g.sh != th || ow * g.sw != tw || oh >= g.OH || ow >= g.OW) return T(0);
    return gy[(((int64_t)img * g.OC + z * g.OCg + oc) * g.OH + oh) * g.OW + ow];
  }
};
template <typename T>
struct BinStore {
  T* gx;
  CG g;
  __device__ __forceinline__ void operator()(int z, int m, int n, T v) const {
    const int HW = g.H * g.W;
    const int img = n / HW, pix = n - img * HW;
    gx[((int64_t)img * g.C + z * g.Cg + m) * HW + pix] = v;
  }
};

template <typename T>
struct BwA {  // gy[g] (OCg x N*P)
  const T* gy;
  CG g;
  __device__ __forceinline__ T operator()(int z, int m, int k) const {
    const int img = k / g.P, pix = k - img * g.P;
    return gy[((int64_t)img * g.OC + z * g.OCg + m) * g.P + pix];
  }
};
template <typename T>
struct BwB {  // col(x)^T (N*P x CKK)
  const T* x;
  CG g;
  __device__ __forceinline__ T operator()(int z, int k, int n) const { return im2col_at<T>(g, x, z, n, k); }
};
template <typename T>
struct BwStore {
  T* gw;
  CG g;
  int atomic;
  __device__ __forceinline__ void operator()(int z, int m, int n, T v) const {
    T* p = gw + ((int64_t)z * g.OCg + m) * g.CKK + n;
    if (atomic) atomicAdd(p, v);
    else *p = v;
  }
};

// ---- bias gradient: one block per output channel ----------------------------------------------

template <typename T>
__global__ void bias_grad_k(const T* __restrict__ gy, T* __restrict__ gb, int N, int OC, int P) {
  __shared__ T scratch[32];
  for (int oc = blockIdx.x; oc < OC; oc += gridDim.x) {
    T s = 0;
    for (int img = 0; img < N; ++img) {
      const T* r = gy + ((int64_t)img * OC + oc) * P;
      for (int i = threadIdx.x; i < P; i += blockDim.x) s += r[i];
    }
    s = block_sum(s, scratch);
    if (threadIdx.x == 0) gb[oc] = s;
  }
}

// ---- depthwise --------------------------------------------------------------------------------

constexpr int kDwTW = 32;              // output columns per block (one per lane)
constexpr int kDwTY = 4;               // thread rows
constexpr int kDwR = 4;                // outputs per thread (consecutive rows)
constexpr int kDwTH = kDwTY * kDwR;    // output rows per block
constexpr int kDwThreads = kDwTW * kDwTY;

struct DwGeo {
  CG g;
  int tiles_w, rows, cols;  // tiles along the width; shared tile rows / columns
};

// y[n, c] tile: out[oh, ow] = bias + sum_{kh, kw} w[kh, kw] * x[oh*sh - ph + kh*dh, ow*sw - pw + kw*dw].
template <typename T>
__global__ void __launch_bounds__(kDwThreads) dw_fwd_k(DwGeo d, const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias, T* __restrict__ y) {
  SC_DYN_SMEM(T, sm);
  const CG& g = d.g;
  T* ws = sm + d.rows * d.cols;
  const int nc = blockIdx.x, c = nc % g.C;
  const int th = blockIdx.y / d.tiles_w, tw = blockIdx.y - th * d.tiles_w;
  const int oh0 = th * kDwTH, ow0 = tw * kDwTW;
  const int ih0 = oh0 * g.sh - g.ph, iw0 = ow0 * g.sw - g.pw;
  const T* xp = x + (int64_t)nc * g.H * g.W;
  for (int i = threadIdx.x; i < d.rows * d.cols; i += blockDim.x) {
    const int r = i / d.cols, cc = i - r * d.cols, ih = ih0 + r, iw = iw0 + cc;
    sm[i] = (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W) ? xp[ih * g.W + iw] : T(0);
  }
  for (int i = threadIdx.x; i < g.KK; i += blockDim.x) ws[i] = w[(int64_t)c * g.KK + i];
  __syncthreads();
  const int tx = threadIdx.x % kDwTW, ty = threadIdx.x / kDwTW;
  const T b0 = bias ? bias[c] : T(0);
  T acc[kDwR];
  SC_UNROLL for (int r = 0; r < kDwR; ++r) acc[r] = b0;
  for (int kh = 0; kh < g.KH; ++kh) {
    for (int kw = 0; kw < g.KW; ++kw) {
      const T wv = ws[kh * g.KW + kw];
      const T* s = sm + (ty * kDwR * g.sh + kh * g.dh) * d.cols + tx * g.sw + kw * g.dw;
      SC_UNROLL for (int r = 0; r < kDwR; ++r) acc[r] += wv * s[r * g.sh * d.cols];
    }
  }
  T* yp = y + (int64_t)nc * g.P;
  const int ow = ow0 + tx;
  SC_UNROLL for (int r = 0; r < kDwR; ++r) {
    const int oh = oh0 + ty * kDwR + r;
    if (oh < g.OH && ow < g.OW) yp[oh * g.OW + ow] = acc[r];
  }
}

// gx[n, c] tile: gx[ih, iw] = sum over taps whose output position (ih + ph - kh*dh) / sh,
// (iw + pw - kw*dw) / sw is integral and inside the output, of w[kh, kw] * gy[oh, ow].
template <typename T>
__global__ void __launch_bounds__(kDwThreads) dw_bwd_input_k(DwGeo d, const T* __restrict__ gy, const T* __restrict__ w, T* __restrict__ gx) {
  SC_DYN_SMEM(T, sm);
  const CG& g = d.g;
  T* ws = sm + d.rows * d.cols;
  const int nc = blockIdx.x, c = nc % g.C;
  const int th = blockIdx.y / d.tiles_w, tw = blockIdx.y - th * d.tiles_w;
  const int ih0 = th * kDwTH, iw0 = tw * kDwTW;
  const int oh_lo = floor_div(ih0 + g.ph - (g.KH - 1) * g.dh, g.sh);
  const int ow_lo = floor_div(iw0 + g.pw - (g.KW - 1) * g.dw, g.sw);
  const T* gp = gy + (int64_t)nc * g.P;
  for (int i = threadIdx.x; i < d.rows * d.cols; i += blockDim.x) {
    const int r = i / d.cols, cc = i - r * d.cols, oh = oh_lo + r, ow = ow_lo + cc;
    sm[i] = (oh >= 0 && oh < g.OH && ow >= 0 && ow < g.OW) ? gp[oh * g.OW + ow] : T(0);
  }
  for (int i = threadIdx.x; i < g.KK; i += blockDim.x) ws[i] = w[(int64_t)c * g.KK + i];
  __syncthreads();
  const int tx = threadIdx.x % kDwTW, ty = threadIdx.x / kDwTW;
  const int iw = iw0 + tx;
  T acc[kDwR];
  SC_UNROLL for (int r = 0; r < kDwR; ++r) acc[r] = T(0);
  for (int kw = 0; kw < g.KW; ++kw) {
    const int tw2 = iw + g.pw - kw * g.dw;
    const int ow = floor_div(tw2, g.sw);
    if (ow * g.sw != tw2) continue;
    const int col = ow - ow_lo;
    for (int kh = 0; kh < g.KH; ++kh) {
      const T wv = ws[kh * g.KW + kw];
      SC_UNROLL for (int r = 0; r < kDwR; ++r) {
        const int th2 = ih0 + ty * kDwR + r + g.ph - kh * g.dh;
        const int oh = floor_div(th2, g.sh);
        if (oh * g.sh == th2) acc[r] += wv * sm[(oh - oh_lo) * d.cols + col];
      }
    }
  }
  T* xp = gx + (int64_t)nc * g.H * g.W;
  SC_UNROLL for (int r = 0; r < kDwR; ++r) {
    const int ih = ih0 + ty * kDwR + r;
    if (ih < g.H && iw < g.W) xp[ih * g.W + iw] = acc[r];
  }
}

// Weight gradient. Block (c, slice): reduces the items (image, 16x32 output tile) of its slice.
// Per item the output-gradient tile and the matching input tile (with halo) are staged in
// shared memory; warp w handles taps w, w + 8, ...: each lane covers one output column over the
// 16 rows, a warp shuffle sums the lanes, and lane 0 accumulates the tap's partial in shared
// memory. At the end one store (single slice) or one atomicAdd (several slices) per tap.
constexpr int kDwWTH = 16, kDwWThreads = 256;

struct DwWGeo {
  CG g;
  int tiles_w, tiles, rows, cols;
};

template <typename T>
__global__ void __launch_bounds__(kDwWThreads) dw_bwd_weight_k(DwWGeo d, const T* __restrict__ x, const T* __restrict__ gy, T* __restrict__ gw) {
  SC_DYN_SMEM(T, sm);
  const CG& g = d.g;
  T* xs = sm;                              // rows x cols
  T* gs = xs + d.rows * d.cols;            // kDwWTH x 32
  T* acc_s = gs + kDwWTH * kDwTW;          // KK
  const int c = blockIdx.x;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  for (int i = threadIdx.x; i < g.KK; i += blockDim.x) acc_s[i] = T(0);
  const int items = g.N * d.tiles;
  for (int item = blockIdx.y; item < items; item += gridDim.y) {
    const int n = item / d.tiles, t = item - n * d.tiles;
    const int th = t / d.tiles_w, tw = t - th * d.tiles_w;
    const int oh0 = th * kDwWTH, ow0 = tw * kDwTW;
    const int ih0 = oh0 * g.sh - g.ph, iw0 = ow0 * g.sw - g.pw;
    const T* xp = x + ((int64_t)n * g.C + c) * g.H * g.W;
    const T* gp = gy + ((int64_t)n * g.C + c) * g.P;
    __syncthreads();  // the previous item's tiles are no longer read
    for (int i = threadIdx.x; i < d.rows * d.cols; i += blockDim.x) {
      const int r = i / d.cols, cc = i - r * d.cols, ih = ih0 + r, iw = iw0 + cc;
      xs[i] = (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W) ? xp[ih * g.W + iw] : T(0);
    }
    for (int i = threadIdx.x; i < kDwWTH * kDwTW; i += blockDim.x) {
      const int r = i / kDwTW, cc = i - r * kDwTW, oh = oh0 + r, ow = ow0 + cc;
      gs[i] = (oh < g.OH && ow < g.OW) ? gp[oh * g.OW + ow] : T(0);
    }
    __syncthreads();
    for (int tap = warp; tap < g.KK; tap += nwarps) {
      const int kh = tap / g.KW, kw = tap - kh * g.KW;
      const T* xr = xs + kh * g.dh * d.cols + lane * g.sw + kw * g.dw;
      T s = 0;
      SC_UNROLL for (int r = 0; r < kDwWTH; ++r) s += gs[r * kDwTW + lane] * xr[r * g.sh * d.cols];
      s = warp_sum(s);
      if (lane == 0) acc_s[tap] += s;
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < g.KK; i += blockDim.x) {
    T* p = gw + (int64_t)c * g.KK + i;
    if (gridDim.y == 1) *p = acc_s[i];
    else atomicAdd(p, acc_s[i]);
  }
}

// Shared-memory tile geometry of the depthwise kernels; false when it does not fit.
bool dw_fwd_geo(const CG& g, DwGeo& d, size_t elt, size_t& smem) {
  d.g = g;
  d.tiles_w = (int)ceil_div64(g.OW, kDwTW);
  const int64_t tiles = (int64_t)d.tiles_w * ceil_div64(g.OH, kDwTH);
  d.rows = (kDwTH - 1) * g.sh + (g.KH - 1) * g.dh + 1;
  d.cols = (kDwTW - 1) * g.sw + (g.KW - 1) * g.dw + 1;
  smem = ((size_t)d.rows * d.cols + g.KK) * elt;
  return smem <= kSmemLimit && tiles <= 65535 && (int64_t)g.N * g.C <= 0x7fffffff;
}
bool dw_bin_geo(const CG& g, DwGeo& d, size_t elt, size_t& smem) {
  d.g = g;
  d.tiles_w = (int)ceil_div64(g.W, kDwTW);
  const int64_t tiles = (int64_t)d.tiles_w * ceil_div64(g.H, kDwTH);
  d.rows = (kDwTH - 1 + (g.KH - 1) * g.dh) / g.sh + 2;
  d.cols = (kDwTW - 1 + (g.KW - 1) * g.dw) / g.sw + 2;
  smem = ((size_t)d.rows * d.cols + g.KK) * elt;
  return smem <= kSmemLimit && tiles <= 65535 && (int64_t)g.N * g.C <= 0x7fffffff;
}
bool dw_bw_geo(const CG& g, DwWGeo& d, size_t elt, size_t& smem) {
  d.g = g;
  d.tiles_w = (int)ceil_div64(g.OW, kDwTW);
  d.tiles = d.tiles_w * (int)ceil_div64(g.OH, kDwWTH);
  d.rows = (kDwWTH - 1) * g.sh + (g.KH - 1) * g.dh + 1;
  d.cols = (kDwTW - 1) * g.sw + (g.KW - 1) * g.dw + 1;
  smem = ((size_t)d.rows * d.cols + kDwWTH * kDwTW + g.KK) * elt;
  return smem <= kSmemLimit && g.C <= 0x7fffffff;
}

// ---- drivers ------------------------------------------------------------------------------------

template <typename T>
void conv_forward(const ConvP& p, const T* x, const T* w, const T* bias, T* y) {
  const CG g = to_cg(p);
  if (p.depthwise()) {
    DwGeo d;
    size_t smem;
    if (dw_fwd_geo(g, d, sizeof(T), smem)) {
      const dim3 grid((unsigned)(p.N * p.C), (unsigned)(d.tiles_w * ceil_div64(p.OH, kDwTH)));
      KLAUNCH(dw_fwd_k<T>, grid, dim3(kDwThreads), smem, 0)(d, x, w, bias, y);
      check_launch("conv2d (depthwise)");
      return;
    }
  }
  tile_gemm<T, true, false>(FwdA<T>{w, g}, FwdB<T>{x, g}, FwdStore<T>{y, bias, g}, p.OCg, p.N * p.P, p.CKK, p.G, 1, p.CKK, "conv2d");
}

template <typename T>
void conv_backward_input(const ConvP& p, const T* gy, const T* w, T* gx) {
  const CG g = to_cg(p);
  if (p.depthwise()) {
    DwGeo d;
    size_t smem;
    if (dw_bin_geo(g, d, sizeof(T), smem)) {
      const dim3 grid((unsigned)(p.N * p.C), (unsigned)(d.tiles_w * ceil_div64(p.H, kDwTH)));
      KLAUNCH(dw_bwd_input_k<T>, grid, dim3(kDwThreads), smem, 0)(d, gy, w, gx);
      check_launch("conv2d_backward_input (depthwise)");
      return;
    }
  }
  const int64_t K = p.OCg * p.KH * p.KW;
  tile_gemm<T, true, false>(BinA<T>{w, g}, BinB<T>{gy, g}, BinStore<T>{gx, g}, p.Cg, p.N * p.HW, K, p.G, 1, K, "conv2d_backward_input");
}

template <typename T>
void conv_backward_weight(const ConvP& p, const T* x, const T* gy, T* gw, T* gb) {
  const CG g = to_cg(p);
  if (gb) {
    KLAUNCH(bias_grad_k<T>, (unsigned)std::min<int64_t>(p.OC, 65535), kThreads, 0, 0)(gy, gb, g.N, g.OC, g.P);
    check_launch("conv2d_backward_weight (bias)");
  }
  const size_t wbytes = (size_t)(p.OC * p.CKK) * sizeof(T);
  if (p.depthwise()) {
    DwWGeo d;
    size_t smem;
    if (dw_bw_geo(g, d, sizeof(T), smem)) {
      const int64_t items = p.N * d.tiles;
      // Enough blocks to fill the GPU, but at least 4 items per block so the atomics stay few.
      const int64_t slices = std::max<int64_t>(1, std::min<int64_t>({ceil_div64(items, 4), ceil_div64(1024, p.C), 65535}));
      if (slices > 1) SC_CUDA_CHECK(cudaMemsetAsync(gw, 0, wbytes, 0));
      KLAUNCH(dw_bwd_weight_k<T>, dim3((unsigned)p.C, (unsigned)slices), dim3(kDwWThreads), smem, 0)(d, x, gy, gw);
      check_launch("conv2d_backward_weight (depthwise)");
      return;
    }
  }
  // Split-K over N*OH*OW so that small weight tensors still fill the GPU.
  const int64_t K = p.N * p.P;
  const int64_t tiles = ceil_div64(p.OCg, kTBM) * ceil_div64(p.CKK, kTBN) * p.G;
  int64_t nsplit = std::max<int64_t>(1, std::min<int64_t>(ceil_div64(512, tiles), ceil_div64(K, 256)));
  int64_t kchunk = ceil_div64(ceil_div64(K, nsplit), kTBK) * kTBK;
  nsplit = std::max<int64_t>(1, ceil_div64(K, kchunk));
  if (nsplit > 1) SC_CUDA_CHECK(cudaMemsetAsync(gw, 0, wbytes, 0));
  tile_gemm<T, true, true>(BwA<T>{gy, g}, BwB<T>{x, g}, BwStore<T>{gw, g, nsplit > 1 ? 1 : 0}, p.OCg, p.CKK, K, p.G, (int)nsplit, kchunk, "conv2d_backward_weight");
}

// ---- fused inference epilogue --------------------------------------------------------------------

// y = act(y) * scale[oc] + shift[oc] in place, after a convolution that already added the bias.
// (A separate pass: inference plans use it to keep one kernel launch per fused op; folding it
// into the GEMM store is a later optimisation.)
template <typename T>
__global__ void fused_epilogue_k(T* __restrict__ y, const T* __restrict__ scale, const T* __restrict__ shift,
                                 int act, int OC, int P, int64_t n) {
  SC_GRID_STRIDE(i, n) {
    T v = y[i];
    if (act == (int)conv::FusedAct::relu) v = v > T(0) ? v : T(0);
    else if (act == (int)conv::FusedAct::gelu) v = T(0.5) * v * (T(1) + erf(v * T(0.70710678118654752440)));
    if (scale) {
      const int oc = (int)((i / P) % OC);
      v = v * scale[oc] + shift[oc];
    }
    y[i] = v;
  }
}

void conv2d_fused_cuda(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& a) {
  const conv::FusedArgs f = conv::check_fused(in, out, a);
  const TArg &x = in[0], &w = in[1], &y = out[0];
  if (y.numel() == 0) return;
  if (x.numel() == 0 || w.numel() == 0) throw KernelError("conv2d_fused: empty input or weight");
  SC_FLOAT_DISPATCH(x.dtype, T, {
    conv_forward<T>(f.p, x.ptr<T>(), w.ptr<T>(), f.bias ? f.bias->ptr<T>() : nullptr, y.ptr<T>());
    if (f.act != conv::FusedAct::none || f.scale) {
      const int64_t n = y.numel();
      KLAUNCH(fused_epilogue_k<T>, blocks_for(n), kThreads, 0, 0)(
          y.ptr<T>(), f.scale ? f.scale->ptr<T>() : nullptr, f.shift ? f.shift->ptr<T>() : nullptr,
          (int)f.act, (int)f.p.OC, (int)f.p.P, n);
      check_launch("conv2d_fused (epilogue)");
    }
  });
}

// ---- kernel entry points ------------------------------------------------------------------------

void conv2d_cuda(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& a) {
  conv::run_forward(in, out, a, [](auto&&... args) { conv_forward(args...); });
}
void conv2d_backward_input_cuda(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& a) {
  conv::run_backward_input(in, out, a, [](auto&&... args) { conv_backward_input(args...); });
}
void conv2d_backward_weight_cuda(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& a) {
  conv::run_backward_weight(in, out, a, [](auto&&... args) { conv_backward_weight(args...); });
}

}  // namespace

SC_KERNEL("conv2d", cuda, conv2d_cuda);
SC_KERNEL("conv2d_backward_input", cuda, conv2d_backward_input_cuda);
SC_KERNEL("conv2d_backward_weight", cuda, conv2d_backward_weight_cuda);
SC_KERNEL("conv2d_fused", cuda, conv2d_fused_cuda);

}  // namespace cu
}  // namespace sc
