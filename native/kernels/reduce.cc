// Reductions over any set of axes, softmax / log-softmax along one axis and their backward.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "../core/kernel.h"
#include "../core/parallel.h"
#include "op_names.h"

namespace sc {
namespace {

using R = ReduceOp;

// Accumulates one output element over the reduced index space described by (rshape, rstride).
template <typename T>
struct Acc {
  R op;
  double s = 0;
  T best;
  int64_t arg = 0;
  int64_t count = 0;
  explicit Acc(R o) : op(o) {
    best = (o == R::max || o == R::argmax) ? -std::numeric_limits<T>::infinity() : std::numeric_limits<T>::infinity();
  }
  inline void add(T v) {
    switch (op) {
      case R::sum: case R::mean: s += v; break;
      case R::max: if (v > best || std::isnan(v)) best = v; break;
      case R::min: if (v < best || std::isnan(v)) best = v; break;
      case R::argmax: if (v > best) { best = v; arg = count; } break;
      case R::argmin: if (v < best) { best = v; arg = count; } break;
    }
    ++count;
  }
};

template <typename T>
void reduce_typed(R op, const TArg& x, const TArg& y, const std::vector<int64_t>& axes) {
  bool red[kMaxDims] = {false};
  for (int64_t a : axes) red[a] = true;
  int64_t kshape[kMaxDims], kstride[kMaxDims], rshape[kMaxDims], rstride[kMaxDims];
  int nk = 0, nr = 0;
  int64_t rcount = 1;
  for (int d = 0; d < x.ndim; ++d) {
    if (red[d]) { rshape[nr] = x.shape[d]; rstride[nr] = x.strides[d]; rcount *= x.shape[d]; ++nr; }
    else { kshape[nk] = x.shape[d]; kstride[nk] = x.strides[d]; ++nk; }
  }
  const T* xp = x.ptr<T>();
  const int64_t nout = y.numel();
  const bool is_arg = op == R::argmax || op == R::argmin;

  auto finish = [&](Acc<T>& acc, int64_t o) {
    if (is_arg) { y.ptr<int32_t>()[o] = static_cast<int32_t>(acc.arg); return; }
    T v;
    if (op == R::sum) v = static_cast<T>(acc.s);
    else if (op == R::mean) v = static_cast<T>(acc.s / static_cast<double>(rcount));
    else v = acc.best;
    y.ptr<T>()[o] = v;
  };

  auto reduce_range = [&](Acc<T>& acc, int64_t base) {
    if (nr == 0) { acc.add(xp[base]); return; }
    int64_t idx[kMaxDims] = {0};
    const int64_t n = rshape[nr - 1], st = rstride[nr - 1];
    int64_t off = base;
    for (;;) {
      const T* p = xp + off;
      if (op == R::sum || op == R::mean) {
        // Tight inner loop with a local accumulator (float accumulates in double).
        double s = 0;
        if (st == 1) for (int64_t i = 0; i < n; ++i) s += p[i];
        else for (int64_t i = 0; i < n; ++i) s += p[i * st];
        acc.s += s;
        acc.count += n;
      } else {
        for (int64_t i = 0; i < n; ++i) acc.add(p[i * st]);
      }
      int d = nr - 2;
      for (; d >= 0; --d) {
        ++idx[d];
        off += rstride[d];
        if (idx[d] < rshape[d]) break;
        off -= idx[d] * rstride[d];
        idx[d] = 0;
      }
      if (d < 0) break;
    }
  };

  // Sum / mean over the leading axes of a contiguous tensor into its trailing ones (bias
  // gradients: [B, N, C] -> [C]): per output, the general loop below strided through every row
  // (2 GB/s on SegFormer's [8,1024,256]). Here rows are added whole into double partial sums,
  // 256 rows per chunk, and the chunks' partials added in order (ordered_row_sums): the result
  // does not depend on the thread count.
  bool leading = nr > 0 && nk > 0 && (op == R::sum || op == R::mean) && x.contiguous();
  for (int d = 0; d < x.ndim && leading; ++d) leading = red[d] == (d < nr);
  if (leading && rcount * nout >= 4096) {
    const int64_t K = nout;
    T* yp = y.ptr<T>();
    ordered_row_sums(rcount, K, 256, 1, [&](int64_t r, double* __restrict a) {
      const T* __restrict row = xp + r * K;
      for (int64_t j = 0; j < K; ++j) a[j] += row[j];
    }, [&](int64_t j, double s) { yp[j] = static_cast<T>(op == R::mean ? s / static_cast<double>(rcount) : s); });
    return;
  }

  if (nout == 1 && rcount > 65536 && !is_arg && nr > 0) {
    // One output, many inputs: partial results per thread over the outermost reduced axis.
    const int nt = num_threads();
    std::vector<Acc<T>> parts(nt, Acc<T>(op));
    const int64_t outer = rshape[0];
    // Reduce over dims 1..nr-1 for each index of dim 0 inside each chunk.
    const int64_t per = (outer + nt - 1) / nt;
    parallel_for(0, nt, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t b = t * per, e = std::min(outer, b + per);
        for (int64_t i = b; i < e; ++i) {
          if (nr == 1) { parts[t].add(xp[i * rstride[0]]); continue; }
          // Temporarily treat the remaining dims as the reduction space.
          int64_t idx[kMaxDims] = {0};
          int64_t off = i * rstride[0];
          const int64_t n = rshape[nr - 1], st = rstride[nr - 1];
          for (;;) {
            const T* p = xp + off;
            if (op == R::sum || op == R::mean) {
              double s = 0;
              for (int64_t j = 0; j < n; ++j) s += p[j * st];
              parts[t].s += s;
              parts[t].count += n;
            } else for (int64_t j = 0; j < n; ++j) parts[t].add(p[j * st]);
            int d = nr - 2;
            for (; d >= 1; --d) {
              ++idx[d];
              off += rstride[d];
              if (idx[d] < rshape[d]) break;
              off -= idx[d] * rstride[d];
              idx[d] = 0;
            }
            if (d < 1) break;
          }
        }
      }
    });
    Acc<T> total(op);
    for (auto& p : parts) {
      total.s += p.s;
      total.count += p.count;
      if (op == R::max) { if (p.best > total.best || std::isnan(p.best)) total.best = p.best; }
      if (op == R::min) { if (p.best < total.best || std::isnan(p.best)) total.best = p.best; }
    }
    finish(total, 0);
    return;
  }

  parallel_for(0, nout, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, rcount)), [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o) {
      int64_t base = 0, r = o;
      for (int d = nk - 1; d >= 0; --d) {
        base += (r % kshape[d]) * kstride[d];
        r /= kshape[d];
      }
      Acc<T> acc(op);
      reduce_range(acc, base);
      finish(acc, o);
    }
  });
}

// in[0] x (any strides); out[0] contiguous with the reduced axes removed (argmax/argmin: int32);
// attrs: op, axes (sorted, unique, non-empty unless x is 0-d).
void reduce_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  const R op = parse_reduce(at.str("op"));
  const auto axes = at.ints("axes");
  for (int64_t a : axes)
    if (a < 0 || a >= in[0].ndim) throw KernelError("reduction axis out of range");
  SC_FLOAT_DISPATCH(in[0].dtype, T, reduce_typed<T>(op, in[0], out[0], axes));
}
SC_KERNEL("reduce", cpu, reduce_kernel);

// ---- softmax ------------------------------------------------------------------------------

void outer_dim_inner(const TArg& x, int64_t dim, int64_t& outer, int64_t& d, int64_t& inner) {
  outer = 1; inner = 1; d = x.shape[dim];
  for (int i = 0; i < dim; ++i) outer *= x.shape[i];
  for (int i = dim + 1; i < x.ndim; ++i) inner *= x.shape[i];
}

template <typename T>
void softmax_typed(const TArg& x, const TArg& y, int64_t dim, bool log) {
  int64_t outer, D, inner;
  outer_dim_inner(x, dim, outer, D, inner);
  const T* xp = x.ptr<T>();
  T* yp = y.ptr<T>();
  parallel_for(0, outer * inner, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, D)), [&](int64_t a, int64_t b) {
    for (int64_t r = a; r < b; ++r) {
      const int64_t o = r / inner, i = r % inner;
      const T* px = xp + o * D * inner + i;
      T* py = yp + o * D * inner + i;
      T m = -std::numeric_limits<T>::infinity();
      for (int64_t k = 0; k < D; ++k) m = std::max(m, px[k * inner]);
      double s = 0;
      for (int64_t k = 0; k < D; ++k) s += std::exp(static_cast<double>(px[k * inner] - m));
      if (log) {
        const T ls = static_cast<T>(std::log(s));
        for (int64_t k = 0; k < D; ++k) py[k * inner] = px[k * inner] - m - ls;
      } else {
        const double inv = 1.0 / s;
        for (int64_t k = 0; k < D; ++k) py[k * inner] = static_cast<T>(std::exp(static_cast<double>(px[k * inner] - m)) * inv);
      }
    }
  });
}

// in[0] x contiguous; out[0] y; attrs: dim, log (0/1).
void softmax_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  SC_FLOAT_DISPATCH(in[0].dtype, T, softmax_typed<T>(in[0], out[0], at.i("dim"), at.b("log")));
}
SC_KERNEL("softmax", cpu, softmax_kernel);

template <typename T>
void softmax_bwd_typed(const TArg& gy, const TArg& y, const TArg& gx, int64_t dim, bool log) {
  int64_t outer, D, inner;
  outer_dim_inner(y, dim, outer, D, inner);
  const T* g = gy.ptr<T>();
  const T* yp = y.ptr<T>();
  T* o = gx.ptr<T>();
  parallel_for(0, outer * inner, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, D)), [&](int64_t a, int64_t b) {
    for (int64_t r = a; r < b; ++r) {
      const int64_t base = (r / inner) * D * inner + r % inner;
      double s = 0;
      if (log) {
        // d/dx log_softmax: g - softmax * sum(g)
        for (int64_t k = 0; k < D; ++k) s += g[base + k * inner];
        for (int64_t k = 0; k < D; ++k) {
          const int64_t j = base + k * inner;
          o[j] = static_cast<T>(g[j] - std::exp(static_cast<double>(yp[j])) * s);
        }
      } else {
        // d/dx softmax: y * (g - sum(g * y))
        for (int64_t k = 0; k < D; ++k) s += static_cast<double>(g[base + k * inner]) * yp[base + k * inner];
        for (int64_t k = 0; k < D; ++k) {
          const int64_t j = base + k * inner;
          o[j] = static_cast<T>(yp[j] * (g[j] - s));
        }
      }
    }
  });
}

// in: gy, y (the forward output), both contiguous; out[0] gx; attrs: dim, log.
void softmax_backward_kernel(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& at) {
  SC_FLOAT_DISPATCH(in[0].dtype, T, softmax_bwd_typed<T>(in[0], in[1], out[0], at.i("dim"), at.b("log")));
}
SC_KERNEL("softmax_backward", cpu, softmax_backward_kernel);

}  // namespace
}  // namespace sc
