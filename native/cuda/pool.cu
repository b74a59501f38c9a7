// 2-D pooling on contiguous NCHW tensors on the CUDA backend (mirror native/kernels/pool.cc):
// max (int32 flat argmax per plane), average (countIncludePad), adaptive average, and their
// backward kernels. Forward kernels: one thread per output element. Average backward kernels
// are gathers (one thread per input pixel sums the windows that cover it: no atomics). The
// max-pool backward gets no window geometry (only the argmax indices), so it runs one block
// per plane, accumulating bands of the plane in shared memory (shared atomics only).
#include <algorithm>

#include "cuda/compat.cuh"
#include "cuda/common.cuh"

namespace sc {
namespace {

struct Plane {
  int64_t planes, H, W, OH, OW;
};
struct Win {
  int kh, kw, sh, sw, ph, pw;
};

Plane plane_of(const TArg& x, const TArg& y) {
  if (x.ndim != 4 || y.ndim != 4) throw KernelError("pooling: expected 4-D [N, C, H, W] tensors");
  return {x.shape[0] * x.shape[1], x.shape[2], x.shape[3], y.shape[2], y.shape[3]};
}
Win win_of(const Attrs& at) {
  const auto k = at.ints("kernelSize"), s = at.ints("stride"), p = at.ints("padding");
  if (k.size() < 2 || s.size() < 2 || p.size() < 2) throw KernelError("pooling: kernelSize, stride, padding need 2 values");
  return {(int)k[0], (int)k[1], (int)s[0], (int)s[1], (int)p[0], (int)p[1]};
}

template <typename T>
__global__ void max_pool_k(const T* __restrict__ x, T* __restrict__ y, int32_t* __restrict__ ind, Plane P, Win w) {
  const int64_t total = P.planes * P.OH * P.OW;
  SC_GRID_STRIDE(o, total) {
    const int64_t ow = o % P.OW, oh = (o / P.OW) % P.OH, pl = o / (P.OW * P.OH);
    const int64_t h0 = max((int64_t)0, oh * w.sh - w.ph), h1 = min(P.H, oh * w.sh - w.ph + w.kh);
    const int64_t w0 = max((int64_t)0, ow * w.sw - w.pw), w1 = min(P.W, ow * w.sw - w.pw + w.kw);
    const T* xs = x + pl * P.H * P.W;
    T best = -cu::d_inf<T>();
    int64_t arg = h0 * P.W + w0;
    for (int64_t h = h0; h < h1; ++h)
      for (int64_t ww = w0; ww < w1; ++ww) {
        const T v = xs[h * P.W + ww];
        if (v > best || v != v) { best = v; arg = h * P.W + ww; }
      }
    y[o] = best;
    ind[o] = (int32_t)arg;
  }
}

void max_pool2d_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const Plane P = plane_of(in[0], out[0]);
  const Win w = win_of(at);
  const int64_t total = P.planes * P.OH * P.OW;
  if (total == 0) return;
  SC_FLOAT_DISPATCH(in[0].dtype, T, {
    KLAUNCH(max_pool_k<T>, cu::blocks_for(total), cu::kThreads, 0, 0)(in[0].ptr<T>(), out[0].ptr<T>(), out[1].ptr<int32_t>(), P, w);
  });
  cu::check_launch("max_pool2d");
}
SC_KERNEL("max_pool2d", cuda, max_pool2d_kernel);

// One block per plane; rows [r0, r0 + band) of the plane accumulate in shared memory.
template <typename T>
__global__ void max_pool_bwd_k(const T* __restrict__ g, const int32_t* __restrict__ ind, T* __restrict__ gx, Plane P,
                               int band) {
  SC_DYN_SMEM(T, acc);
  const int64_t pl = blockIdx.x;
  const int64_t HW = P.H * P.W, OHW = P.OH * P.OW;
  const T* gs = g + pl * OHW;
  const int32_t* is = ind + pl * OHW;
  T* dst = gx + pl * HW;
  for (int64_t r0 = 0; r0 < P.H; r0 += band) {
    const int64_t lo = r0 * P.W, hi = min(P.H, r0 + band) * P.W;
    for (int64_t e = threadIdx.x; e < hi - lo; e += blockDim.x) acc[e] = 0;
    __syncthreads();
    for (int64_t o = threadIdx.x; o < OHW; o += blockDim.x) {
      const int64_t i = is[o];
      if (i >= lo && i < hi) atomicAdd(&acc[i - lo], gs[o]);
    }
    __syncthreads();
    for (int64_t e = threadIdx.x; e < hi - lo; e += blockDim.x) dst[lo + e] = acc[e];
    __syncthreads();
  }
}

void max_pool2d_backward_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs&) {
  const Plane P = plane_of(out[0], in[0]);
  if (P.planes == 0 || P.H * P.W == 0) return;
  SC_FLOAT_DISPATCH(in[0].dtype, T, {
    const int64_t row = P.W * (int64_t)sizeof(T);
    if (row > (int64_t)cu::kSmemLimit) throw KernelError("max_pool2d_backward: input rows too wide for the CUDA kernel");
    const int band = (int)std::min<int64_t>(P.H, (int64_t)cu::kSmemLimit / row);
    KLAUNCH(max_pool_bwd_k<T>, dim3((unsigned)P.planes), cu::kThreads, (size_t)band * row, 0)
    (in[0].ptr<T>(), in[1].ptr<int32_t>(), out[0].ptr<T>(), P, band);
  });
  cu::check_launch("max_pool2d_backward");
}
SC_KERNEL("max_pool2d_backward", cuda, max_pool2d_backward_kernel);

// ---- average pool ------------------------------------------------------------------------

struct AvgWin {
  int64_t h0, h1, w0, w1, div;
};
__device__ __forceinline__ AvgWin avg_window(const Plane& P, const Win& w, int64_t oh, int64_t ow, int inc) {
  int64_t h0 = oh * w.sh - w.ph, w0 = ow * w.sw - w.pw;
  int64_t h1 = min(h0 + w.kh, P.H + w.ph), w1 = min(w0 + w.kw, P.W + w.pw);
  const int64_t padded = (h1 - h0) * (w1 - w0);
  h0 = max(h0, (int64_t)0);
  w0 = max(w0, (int64_t)0);
  h1 = min(h1, P.H);
  w1 = min(w1, P.W);
  return {h0, h1, w0, w1, inc ? padded : (h1 - h0) * (w1 - w0)};
}

template <typename T>
__global__ void avg_pool_k(const T* __restrict__ x, T* __restrict__ y, Plane P, Win w, int inc) {
  const int64_t total = P.planes * P.OH * P.OW;
  SC_GRID_STRIDE(o, total) {
    const int64_t ow = o % P.OW, oh = (o / P.OW) % P.OH, pl = o / (P.OW * P.OH);
    const AvgWin a = avg_window(P, w, oh, ow, inc);
    const T* xs = x + pl * P.H * P.W;
    double acc = 0;
    for (int64_t h = a.h0; h < a.h1; ++h)
      for (int64_t ww = a.w0; ww < a.w1; ++ww) acc += xs[h * P.W + ww];
    y[o] = (T)(acc / (double)a.div);
  }
}

// Gather: input pixel (h, w) lies in the windows of oh in [ceil((h + ph - kh + 1) / sh), (h + ph) / sh].
template <typename T>
__global__ void avg_pool_bwd_k(const T* __restrict__ g, T* __restrict__ gx, Plane P, Win w, int inc) {
  const int64_t total = P.planes * P.H * P.W;
  SC_GRID_STRIDE(i, total) {
    const int64_t x = i % P.W, y = (i / P.W) % P.H, pl = i / (P.W * P.H);
    const int64_t oh_lo = max((int64_t)0, (y + w.ph - w.kh + w.sh) / w.sh);
    const int64_t oh_hi = min(P.OH - 1, (y + w.ph) / w.sh);
    const int64_t ow_lo = max((int64_t)0, (x + w.pw - w.kw + w.sw) / w.sw);
    const int64_t ow_hi = min(P.OW - 1, (x + w.pw) / w.sw);
    const T* gs = g + pl * P.OH * P.OW;
    T acc = 0;
    for (int64_t oh = oh_lo; oh <= oh_hi; ++oh)
      for (int64_t ow = ow_lo; ow <= ow_hi; ++ow) {
        const AvgWin a = avg_window(P, w, oh, ow, inc);
        if (y >= a.h0 && y < a.h1 && x >= a.w0 && x < a.w1) acc += gs[oh * P.OW + ow] / (T)a.div;
      }
    gx[i] = acc;
  }
}

void avg_pool2d_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const Plane P = plane_of(in[0], out[0]);
  const Win w = win_of(at);
  const int inc = at.b("countIncludePad", true) ? 1 : 0;
  const int64_t total = P.planes * P.OH * P.OW;
  if (total == 0) return;
  SC_FLOAT_DISPATCH(in[0].dtype, T, {
    KLAUNCH(avg_pool_k<T>, cu::blocks_for(total), cu::kThreads, 0, 0)(in[0].ptr<T>(), out[0].ptr<T>(), P, w, inc);
  });
  cu::check_launch("avg_pool2d");
}
SC_KERNEL("avg_pool2d", cuda, avg_pool2d_kernel);

void avg_pool2d_backward_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const Plane P = plane_of(out[0], in[0]);
  const Win w = win_of(at);
  if (w.sh < 1 || w.sw < 1) throw KernelError("avg_pool2d_backward: stride must be positive");
  const int inc = at.b("countIncludePad", true) ? 1 : 0;
  const int64_t total = P.planes * P.H * P.W;
  if (total == 0) return;
  SC_FLOAT_DISPATCH(in[0].dtype, T, {
    KLAUNCH(avg_pool_bwd_k<T>, cu::blocks_for(total), cu::kThreads, 0, 0)(in[0].ptr<T>(), out[0].ptr<T>(), P, w, inc);
  });
  cu::check_launch("avg_pool2d_backward");
}
SC_KERNEL("avg_pool2d_backward", cuda, avg_pool2d_backward_kernel);

// ---- adaptive average pool ---------------------------------------------------------------

__device__ __forceinline__ int64_t bin_start(int64_t o, int64_t in, int64_t out) { return (o * in) / out; }
__device__ __forceinline__ int64_t bin_end(int64_t o, int64_t in, int64_t out) { return ((o + 1) * in + out - 1) / out; }

template <typename T>
__global__ void adaptive_k(const T* __restrict__ x, T* __restrict__ y, Plane P) {
  const int64_t total = P.planes * P.OH * P.OW;
  SC_GRID_STRIDE(o, total) {
    const int64_t ow = o % P.OW, oh = (o / P.OW) % P.OH, pl = o / (P.OW * P.OH);
    const int64_t h0 = bin_start(oh, P.H, P.OH), h1 = bin_end(oh, P.H, P.OH);
    const int64_t w0 = bin_start(ow, P.W, P.OW), w1 = bin_end(ow, P.W, P.OW);
    const T* xs = x + pl * P.H * P.W;
    double acc = 0;
    for (int64_t h = h0; h < h1; ++h)
      for (int64_t w = w0; w < w1; ++w) acc += xs[h * P.W + w];
    y[o] = (T)(acc / (double)((h1 - h0) * (w1 - w0)));
  }
}

// Gather: pixel h lies in the bins oh in [floor(h*OH/H), ceil((h+1)*OH/H) - 1].
template <typename T>
__global__ void adaptive_bwd_k(const T* __restrict__ g, T* __restrict__ gx, Plane P) {
  const int64_t total = P.planes * P.H * P.W;
  SC_GRID_STRIDE(i, total) {
    const int64_t x = i % P.W, y = (i / P.W) % P.H, pl = i / (P.W * P.H);
    const int64_t oh_lo = (y * P.OH) / P.H, oh_hi = min(P.OH - 1, ((y + 1) * P.OH + P.H - 1) / P.H - 1);
    const int64_t ow_lo = (x * P.OW) / P.W, ow_hi = min(P.OW - 1, ((x + 1) * P.OW + P.W - 1) / P.W - 1);
    const T* gs = g + pl * P.OH * P.OW;
    T acc = 0;
    for (int64_t oh = oh_lo; oh <= oh_hi; ++oh) {
      const int64_t h0 = bin_start(oh, P.H, P.OH), h1 = bin_end(oh, P.H, P.OH);
      if (y < h0 || y >= h1) continue;
      for (int64_t ow = ow_lo; ow <= ow_hi; ++ow) {
        const int64_t w0 = bin_start(ow, P.W, P.OW), w1 = bin_end(ow, P.W, P.OW);
        if (x < w0 || x >= w1) continue;
        acc += gs[oh * P.OW + ow] / (T)((h1 - h0) * (w1 - w0));
      }
    }
    gx[i] = acc;
  }
}

void adaptive_avg_pool2d_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs&) {
  const Plane P = plane_of(in[0], out[0]);
  const int64_t total = P.planes * P.OH * P.OW;
  if (total == 0) return;
  SC_FLOAT_DISPATCH(in[0].dtype, T, {
    KLAUNCH(adaptive_k<T>, cu::blocks_for(total), cu::kThreads, 0, 0)(in[0].ptr<T>(), out[0].ptr<T>(), P);
  });
  cu::check_launch("adaptive_avg_pool2d");
}
SC_KERNEL("adaptive_avg_pool2d", cuda, adaptive_avg_pool2d_kernel);

void adaptive_avg_pool2d_backward_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs&) {
  const Plane P = plane_of(out[0], in[0]);
  const int64_t total = P.planes * P.H * P.W;
  if (total == 0) return;
  SC_FLOAT_DISPATCH(in[0].dtype, T, {
    KLAUNCH(adaptive_bwd_k<T>, cu::blocks_for(total), cu::kThreads, 0, 0)(in[0].ptr<T>(), out[0].ptr<T>(), P);
  });
  cu::check_launch("adaptive_avg_pool2d_backward");
}
SC_KERNEL("adaptive_avg_pool2d_backward", cuda, adaptive_avg_pool2d_backward_kernel);

}  // namespace
}  // namespace sc
