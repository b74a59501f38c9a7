// 2-D resizing (bilinear with/without alignCorners, nearest) of contiguous NCHW tensors on the
// CUDA backend (mirror native/kernels/interpolate.cc). The per-axis taps are computed on the host
// exactly as the CPU kernel does and uploaded. The backward is a gather: for every input pixel,
// per-axis inverse tap lists (CSR, built on the host) name the outputs that read it, so each
// thread owns one input gradient and no atomics are needed.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "cuda/compat.cuh"
#include "cuda/common.cuh"
#include "kernels/interpolate_taps.h"

namespace sc {
namespace {

using interp::Tap;

struct Dims {
  int64_t planes, H, W, OH, OW;
};

// Inverse taps of one axis: for input index i, entries [start[i], start[i+1]) of (output, weight),
// in output order then tap order (as the CPU's scatter visits them).
struct Inverse {
  std::vector<int64_t> start;
  std::vector<int64_t> out;
  std::vector<double> w;
};
Inverse inverse(const std::vector<Tap>& t, int64_t in) {
  Inverse v;
  v.start.assign(in + 1, 0);
  for (const Tap& a : t) { ++v.start[a.i0 + 1]; ++v.start[a.i1 + 1]; }
  for (int64_t i = 0; i < in; ++i) v.start[i + 1] += v.start[i];
  std::vector<int64_t> fill(v.start.begin(), v.start.end() - 1);
  v.out.resize(2 * t.size());
  v.w.resize(2 * t.size());
  for (size_t o = 0; o < t.size(); ++o) {
    int64_t k = fill[t[o].i0]++;
    v.out[k] = (int64_t)o; v.w[k] = t[o].w0;
    k = fill[t[o].i1]++;
    v.out[k] = (int64_t)o; v.w[k] = t[o].w1;
  }
  return v;
}

// Uploads a host vector into one scratch buffer.
template <typename V>
void upload(const cu::Scratch& s, size_t byte_off, const std::vector<V>& v) {
  if (!v.empty())
    SC_CUDA_CHECK(cudaMemcpy(static_cast<char*>(s.p) + byte_off, v.data(), v.size() * sizeof(V), cudaMemcpyHostToDevice));
}

template <typename T>
__global__ void interp_k(const T* __restrict__ x, T* __restrict__ y, Dims d, const int64_t* __restrict__ hi,
                         const double* __restrict__ hw, const int64_t* __restrict__ wi, const double* __restrict__ ww) {
  const int64_t total = d.planes * d.OH * d.OW;
  SC_GRID_STRIDE(o, total) {
    const int64_t ow = o % d.OW, oh = (o / d.OW) % d.OH, pl = o / (d.OW * d.OH);
    const T* xs = x + pl * d.H * d.W;
    const T* row0 = xs + hi[2 * oh] * d.W;
    const T* row1 = xs + hi[2 * oh + 1] * d.W;
    const int64_t i0 = wi[2 * ow], i1 = wi[2 * ow + 1];
    const double a0 = ww[2 * ow], a1 = ww[2 * ow + 1];
    y[o] = (T)(hw[2 * oh] * (a0 * row0[i0] + a1 * row0[i1]) + hw[2 * oh + 1] * (a0 * row1[i0] + a1 * row1[i1]));
  }
}

template <typename T>
__global__ void interp_bwd_k(const T* __restrict__ g, T* __restrict__ gx, Dims d, const int64_t* __restrict__ hs,
                             const int64_t* __restrict__ ho, const double* __restrict__ hw,
                             const int64_t* __restrict__ ws, const int64_t* __restrict__ wo,
                             const double* __restrict__ wwt) {
  const int64_t total = d.planes * d.H * d.W;
  SC_GRID_STRIDE(i, total) {
    const int64_t x = i % d.W, y = (i / d.W) % d.H, pl = i / (d.W * d.H);
    const T* gs = g + pl * d.OH * d.OW;
    T acc = 0;
    for (int64_t a = hs[y]; a < hs[y + 1]; ++a) {
      const T* grow = gs + ho[a] * d.OW;
      const double wh = hw[a];
      for (int64_t b = ws[x]; b < ws[x + 1]; ++b) acc += (T)(wh * wwt[b] * (double)grow[wo[b]]);
    }
    gx[i] = acc;
  }
}

struct Plan {
  Dims d;
  std::vector<Tap> th, tw;
};
Plan plan(const TArg& x, const TArg& y, const Attrs& at) {
  interp::Resize r = interp::plan(x, y, at);
  return Plan{{r.planes, r.H, r.W, r.OH, r.OW}, std::move(r.th), std::move(r.tw)};
}

void interpolate_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const Plan p = plan(in[0], out[0], at);
  const int64_t total = p.d.planes * p.d.OH * p.d.OW;
  if (total == 0) return;
  std::vector<int64_t> hi, wi;
  std::vector<double> hw, ww;
  for (const Tap& t : p.th) { hi.push_back(t.i0); hi.push_back(t.i1); hw.push_back(t.w0); hw.push_back(t.w1); }
  for (const Tap& t : p.tw) { wi.push_back(t.i0); wi.push_back(t.i1); ww.push_back(t.w0); ww.push_back(t.w1); }
  const size_t nh = hi.size() * 8, nw = wi.size() * 8;
  cu::Scratch s(2 * nh + 2 * nw);
  upload(s, 0, hi);
  upload(s, nh, hw);
  upload(s, 2 * nh, wi);
  upload(s, 2 * nh + nw, ww);
  const char* b = static_cast<const char*>(s.p);
  SC_FLOAT_DISPATCH(in[0].dtype, T, {
    KLAUNCH(interp_k<T>, cu::blocks_for(total), cu::kThreads, 0, 0)
    (in[0].ptr<T>(), out[0].ptr<T>(), p.d, (const int64_t*)b, (const double*)(b + nh), (const int64_t*)(b + 2 * nh),
     (const double*)(b + 2 * nh + nw));
  });
  cu::check_launch("interpolate");
}
SC_KERNEL("interpolate", cuda, interpolate_kernel);

void interpolate_backward_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const Plan p = plan(out[0], in[0], at);
  const int64_t total = p.d.planes * p.d.H * p.d.W;
  if (total == 0) return;
  const Inverse ih = inverse(p.th, p.d.H), iw = inverse(p.tw, p.d.W);
  const size_t a = ih.start.size() * 8, b = ih.out.size() * 8, c = iw.start.size() * 8, e = iw.out.size() * 8;
  cu::Scratch s(a + 2 * b + c + 2 * e);
  upload(s, 0, ih.start);
  upload(s, a, ih.out);
  upload(s, a + b, ih.w);
  upload(s, a + 2 * b, iw.start);
  upload(s, a + 2 * b + c, iw.out);
  upload(s, a + 2 * b + c + e, iw.w);
  const char* base = static_cast<const char*>(s.p);
  SC_FLOAT_DISPATCH(in[0].dtype, T, {
    KLAUNCH(interp_bwd_k<T>, cu::blocks_for(total), cu::kThreads, 0, 0)
    (in[0].ptr<T>(), out[0].ptr<T>(), p.d, (const int64_t*)base, (const int64_t*)(base + a),
     (const double*)(base + a + b), (const int64_t*)(base + a + 2 * b), (const int64_t*)(base + a + 2 * b + c),
     (const double*)(base + a + 2 * b + c + e));
  });
  cu::check_launch("interpolate_backward");
}
SC_KERNEL("interpolate_backward", cuda, interpolate_backward_kernel);

}  // namespace
}  // namespace sc
