// 2-D pooling on contiguous NCHW tensors: max (with int32 argmax indices for its backward),
// average (PyTorch's count_include_pad option) and adaptive average, and their backward
// kernels. Every kernel works plane by plane (one n, c at a time) and splits the N*C planes
// over threads, so the backward scatter-adds never race.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "../core/kernel.h"
#include "../core/parallel.h"

namespace sc {
namespace {

struct Plane {
  int64_t planes, H, W, OH, OW;
};

Plane plane_of(const TArg& x, const TArg& y) {
  if (x.ndim != 4 || y.ndim != 4) throw KernelError("pooling: expected 4-D [N, C, H, W] tensors");
  return {x.shape[0] * x.shape[1], x.shape[2], x.shape[3], y.shape[2], y.shape[3]};
}

// Enough planes per chunk that tiny planes do not pay a thread wake-up each.
int64_t plane_grain(int64_t plane_elems) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, plane_elems)); }

// ---- max pool -----------------------------------------------------------------------------

template <typename T>
void max_pool_typed(const TArg& x, const TArg& y, const TArg& idx, const int64_t* k, const int64_t* s, const int64_t* p) {
  const Plane P = plane_of(x, y);
  const T* xp = x.ptr<T>();
  T* yp = y.ptr<T>();
  int32_t* ip = idx.ptr<int32_t>();
  // The UNets' 2x2 / stride 2 pool: no window clipping, four loads per output.
  const bool k2s2 = k[0] == 2 && k[1] == 2 && s[0] == 2 && s[1] == 2 && p[0] == 0 && p[1] == 0;
  parallel_for(0, P.planes, plane_grain(P.H * P.W), [&](int64_t a, int64_t b) {
    for (int64_t pl = a; pl < b; ++pl) {
      const T* xs = xp + pl * P.H * P.W;
      if (k2s2) {
        for (int64_t oh = 0; oh < P.OH; ++oh) {
          const T* r0 = xs + 2 * oh * P.W;
          T* yo = yp + pl * P.OH * P.OW + oh * P.OW;
          int32_t* io = ip + pl * P.OH * P.OW + oh * P.OW;
          const T* r1 = r0 + P.W;
          const int32_t base = static_cast<int32_t>(2 * oh * P.W);
          const int32_t W32 = static_cast<int32_t>(P.W);
          // Same scan order and NaN rule as the general loop below, written with selects and
          // no inner loop so that the compiler vectorises it (the comparisons are
          // unpredictable on real images, so branches would cost more than the loads).
          for (int64_t ow = 0; ow < P.OW; ++ow) {
            const T a = r0[2 * ow], b = r0[2 * ow + 1], c = r1[2 * ow], d = r1[2 * ow + 1];
            const int32_t o = static_cast<int32_t>(2 * ow);
            T best = a;
            int32_t arg = 0;
            bool t = (b > best) | (b != b);
            best = t ? b : best, arg = t ? 1 : arg;
            t = (c > best) | (c != c);
            best = t ? c : best, arg = t ? W32 : arg;
            t = (d > best) | (d != d);
            best = t ? d : best, arg = t ? W32 + 1 : arg;
            yo[ow] = best;
            io[ow] = base + o + arg;
          }
        }
        continue;
      }
      for (int64_t oh = 0; oh < P.OH; ++oh)
        for (int64_t ow = 0; ow < P.OW; ++ow) {
          const int64_t h0 = std::max<int64_t>(0, oh * s[0] - p[0]), h1 = std::min(P.H, oh * s[0] - p[0] + k[0]);
          const int64_t w0 = std::max<int64_t>(0, ow * s[1] - p[1]), w1 = std::min(P.W, ow * s[1] - p[1] + k[1]);
          T best = -std::numeric_limits<T>::infinity();
          int64_t arg = h0 * P.W + w0;
          for (int64_t h = h0; h < h1; ++h)
            for (int64_t w = w0; w < w1; ++w) {
              const T v = xs[h * P.W + w];
              // NaN wins, like PyTorch, so it propagates instead of being skipped.
              if (v > best || std::isnan(v)) { best = v; arg = h * P.W + w; }
            }
          const int64_t o = pl * P.OH * P.OW + oh * P.OW + ow;
          yp[o] = best;
          ip[o] = static_cast<int32_t>(arg);
        }
    }
  });
}

// in: x; out: y, indices (int32, flat h*W+w within the plane); attrs: kernelSize, stride, padding.
void max_pool2d_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const auto k = at.ints("kernelSize"), s = at.ints("stride"), p = at.ints("padding");
  SC_FLOAT_DISPATCH(in[0].dtype, T, max_pool_typed<T>(in[0], out[0], out[1], k.data(), s.data(), p.data()));
}
SC_KERNEL("max_pool2d", cpu, max_pool2d_kernel);

template <typename T>
void max_pool_bwd_typed(const TArg& g, const TArg& idx, const TArg& gx) {
  const Plane P = plane_of(gx, g);
  const T* gp = g.ptr<T>();
  const int32_t* ip = idx.ptr<int32_t>();
  T* op = gx.ptr<T>();
  parallel_for(0, P.planes, plane_grain(P.H * P.W), [&](int64_t a, int64_t b) {
    for (int64_t pl = a; pl < b; ++pl) {
      T* dst = op + pl * P.H * P.W;
      std::fill(dst, dst + P.H * P.W, T(0));
      const int64_t base = pl * P.OH * P.OW;
      for (int64_t o = 0; o < P.OH * P.OW; ++o) dst[ip[base + o]] += gp[base + o];
    }
  });
}

// in: gy, indices (from max_pool2d); out: gx (the input's shape).
void max_pool2d_backward_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs&) {
  SC_FLOAT_DISPATCH(in[0].dtype, T, max_pool_bwd_typed<T>(in[0], in[1], out[0]));
}
SC_KERNEL("max_pool2d_backward", cpu, max_pool2d_backward_kernel);

// ---- average pool -------------------------------------------------------------------------

// Calls f(h0, h1, w0, w1, divisor) for every output element of one plane, with PyTorch's
// window clipping: the divisor counts padded positions when countIncludePad is set.
template <typename F>
void avg_windows(const Plane& P, const int64_t* k, const int64_t* s, const int64_t* p, bool include_pad, F f) {
  for (int64_t oh = 0; oh < P.OH; ++oh)
    for (int64_t ow = 0; ow < P.OW; ++ow) {
      int64_t h0 = oh * s[0] - p[0], w0 = ow * s[1] - p[1];
      int64_t h1 = std::min(h0 + k[0], P.H + p[0]), w1 = std::min(w0 + k[1], P.W + p[1]);
      const int64_t padded = (h1 - h0) * (w1 - w0);
      h0 = std::max<int64_t>(h0, 0); w0 = std::max<int64_t>(w0, 0);
      h1 = std::min(h1, P.H); w1 = std::min(w1, P.W);
      const int64_t div = include_pad ? padded : (h1 - h0) * (w1 - w0);
      f(oh * P.OW + ow, h0, h1, w0, w1, div);
    }
}

template <typename T>
void avg_pool_typed(const TArg& x, const TArg& y, const int64_t* k, const int64_t* s, const int64_t* p, bool inc) {
  const Plane P = plane_of(x, y);
  parallel_for(0, P.planes, plane_grain(P.H * P.W), [&](int64_t a, int64_t b) {
    for (int64_t pl = a; pl < b; ++pl) {
      const T* xs = x.ptr<T>() + pl * P.H * P.W;
      T* ys = y.ptr<T>() + pl * P.OH * P.OW;
      avg_windows(P, k, s, p, inc, [&](int64_t o, int64_t h0, int64_t h1, int64_t w0, int64_t w1, int64_t div) {
        double acc = 0;
        for (int64_t h = h0; h < h1; ++h)
          for (int64_t w = w0; w < w1; ++w) acc += xs[h * P.W + w];
        ys[o] = static_cast<T>(acc / static_cast<double>(div));
      });
    }
  });
}

template <typename T>
void avg_pool_bwd_typed(const TArg& g, const TArg& gx, const int64_t* k, const int64_t* s, const int64_t* p, bool inc) {
  const Plane P = plane_of(gx, g);
  parallel_for(0, P.planes, plane_grain(P.H * P.W), [&](int64_t a, int64_t b) {
    for (int64_t pl = a; pl < b; ++pl) {
      const T* gs = g.ptr<T>() + pl * P.OH * P.OW;
      T* dst = gx.ptr<T>() + pl * P.H * P.W;
      std::fill(dst, dst + P.H * P.W, T(0));
      avg_windows(P, k, s, p, inc, [&](int64_t o, int64_t h0, int64_t h1, int64_t w0, int64_t w1, int64_t div) {
        const T v = gs[o] / static_cast<T>(div);
        for (int64_t h = h0; h < h1; ++h)
          for (int64_t w = w0; w < w1; ++w) dst[h * P.W + w] += v;
      });
    }
  });
}

// in: x; out: y; attrs: kernelSize, stride, padding, countIncludePad.
void avg_pool2d_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const auto k = at.ints("kernelSize"), s = at.ints("stride"), p = at.ints("padding");
  SC_FLOAT_DISPATCH(in[0].dtype, T, avg_pool_typed<T>(in[0], out[0], k.data(), s.data(), p.data(), at.b("countIncludePad", true)));
}
SC_KERNEL("avg_pool2d", cpu, avg_pool2d_kernel);

// in: gy; out: gx (the input's shape); attrs as avg_pool2d.
void avg_pool2d_backward_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const auto k = at.ints("kernelSize"), s = at.ints("stride"), p = at.ints("padding");
  SC_FLOAT_DISPATCH(in[0].dtype, T, avg_pool_bwd_typed<T>(in[0], out[0], k.data(), s.data(), p.data(), at.b("countIncludePad", true)));
}
SC_KERNEL("avg_pool2d_backward", cpu, avg_pool2d_backward_kernel);

// ---- adaptive average pool ----------------------------------------------------------------

// PyTorch's bins: [floor(o*in/out), ceil((o+1)*in/out)).
inline int64_t bin_start(int64_t o, int64_t in, int64_t out) { return (o * in) / out; }
inline int64_t bin_end(int64_t o, int64_t in, int64_t out) { return ((o + 1) * in + out - 1) / out; }

template <typename T>
void adaptive_typed(const TArg& x, const TArg& y) {
  const Plane P = plane_of(x, y);
  parallel_for(0, P.planes, plane_grain(P.H * P.W), [&](int64_t a, int64_t b) {
    for (int64_t pl = a; pl < b; ++pl) {
      const T* xs = x.ptr<T>() + pl * P.H * P.W;
      T* ys = y.ptr<T>() + pl * P.OH * P.OW;
      for (int64_t oh = 0; oh < P.OH; ++oh) {
        const int64_t h0 = bin_start(oh, P.H, P.OH), h1 = bin_end(oh, P.H, P.OH);
        for (int64_t ow = 0; ow < P.OW; ++ow) {
          const int64_t w0 = bin_start(ow, P.W, P.OW), w1 = bin_end(ow, P.W, P.OW);
          double acc = 0;
          for (int64_t h = h0; h < h1; ++h)
            for (int64_t w = w0; w < w1; ++w) acc += xs[h * P.W + w];
          ys[oh * P.OW + ow] = static_cast<T>(acc / static_cast<double>((h1 - h0) * (w1 - w0)));
        }
      }
    }
  });
}

template <typename T>
void adaptive_bwd_typed(const TArg& g, const TArg& gx) {
  const Plane P = plane_of(gx, g);
  parallel_for(0, P.planes, plane_grain(P.H * P.W), [&](int64_t a, int64_t b) {
    for (int64_t pl = a; pl < b; ++pl) {
      const T* gs = g.ptr<T>() + pl * P.OH * P.OW;
      T* dst = gx.ptr<T>() + pl * P.H * P.W;
      std::fill(dst, dst + P.H * P.W, T(0));
      for (int64_t oh = 0; oh < P.OH; ++oh) {
        const int64_t h0 = bin_start(oh, P.H, P.OH), h1 = bin_end(oh, P.H, P.OH);
        for (int64_t ow = 0; ow < P.OW; ++ow) {
          const int64_t w0 = bin_start(ow, P.W, P.OW), w1 = bin_end(ow, P.W, P.OW);
          const T v = gs[oh * P.OW + ow] / static_cast<T>((h1 - h0) * (w1 - w0));
          for (int64_t h = h0; h < h1; ++h)
            for (int64_t w = w0; w < w1; ++w) dst[h * P.W + w] += v;
        }
      }
    }
  });
}

// in: x; out: y [N, C, OH, OW].
void adaptive_avg_pool2d_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs&) {
  SC_FLOAT_DISPATCH(in[0].dtype, T, adaptive_typed<T>(in[0], out[0]));
}
SC_KERNEL("adaptive_avg_pool2d", cpu, adaptive_avg_pool2d_kernel);

// in: gy; out: gx (the input's shape).
void adaptive_avg_pool2d_backward_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs&) {
  SC_FLOAT_DISPATCH(in[0].dtype, T, adaptive_bwd_typed<T>(in[0], out[0]));
}
SC_KERNEL("adaptive_avg_pool2d_backward", cpu, adaptive_avg_pool2d_backward_kernel);

}  // namespace
}  // namespace sc
