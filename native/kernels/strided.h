// Iteration over strided, broadcast views with a contiguous output.
//
// The output (contiguous) defines the iteration shape; each input carries its own strides in
// that shape (0 where it is broadcast). Adjacent dimensions that are contiguous in every
// operand are merged, then the last dimension becomes a tight inner loop that the compiler
// vectorises when the inner strides are 1 (or 0 for a broadcast scalar).
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>

#include "../core/kernel.h"
#include "../core/parallel.h"

namespace sc {

template <int N>
struct StridedPlan {
  int ndim = 0;
  int64_t shape[kMaxDims];
  int64_t strides[N][kMaxDims];  // per input, in elements
};

template <int N>
StridedPlan<N> make_plan(const TArg& out, const std::array<const TArg*, N>& ins) {
  StridedPlan<N> p;
  // Start from the output shape, dropping size-1 dims.
  int64_t shp[kMaxDims];
  int64_t st[N][kMaxDims];
  int nd = 0;
  for (int d = 0; d < out.ndim; ++d) {
    if (out.shape[d] == 1) continue;
    shp[nd] = out.shape[d];
    for (int k = 0; k < N; ++k) st[k][nd] = ins[k]->strides[d + (ins[k]->ndim - out.ndim)];
    ++nd;
  }
  if (nd == 0) {
    shp[0] = 1;
    for (int k = 0; k < N; ++k) st[k][0] = 0;
    nd = 1;
  }
  // Merge dim d into d-1 when every operand is contiguous across the pair.
  p.ndim = 0;
  for (int d = 0; d < nd; ++d) {
    if (p.ndim > 0) {
      bool merge = true;
      for (int k = 0; k < N; ++k)
        if (p.strides[k][p.ndim - 1] != st[k][d] * shp[d]) merge = false;
      if (merge) {
        p.shape[p.ndim - 1] *= shp[d];
        for (int k = 0; k < N; ++k) p.strides[k][p.ndim - 1] = st[k][d];
        continue;
      }
    }
    p.shape[p.ndim] = shp[d];
    for (int k = 0; k < N; ++k) p.strides[k][p.ndim] = st[k][d];
    ++p.ndim;
  }
  return p;
}

// inner(n, out_offset, in_offsets[N], inner_strides[N]) is called once per row of the
// innermost dimension; out_offset indexes the contiguous output.
template <int N, typename Inner>
void for_each_row(const StridedPlan<N>& p, Inner&& inner, int64_t work_per_row_hint = 1) {
  const int64_t n = p.shape[p.ndim - 1];
  int64_t rows = 1;
  for (int d = 0; d < p.ndim - 1; ++d) rows *= p.shape[d];
  int64_t inner_st[N];
  for (int k = 0; k < N; ++k) inner_st[k] = p.strides[k][p.ndim - 1];
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, n * work_per_row_hint));
  auto run_rows = [&](int64_t r0, int64_t r1) {
    int64_t idx[kMaxDims] = {0};
    int64_t off[N] = {0};
    // Position the odometer at row r0.
    int64_t r = r0;
    for (int d = p.ndim - 2; d >= 0; --d) {
      idx[d] = r % p.shape[d];
      r /= p.shape[d];
      for (int k = 0; k < N; ++k) off[k] += idx[d] * p.strides[k][d];
    }
    for (int64_t row = r0; row < r1; ++row) {
      inner(n, row * n, off, inner_st);
      for (int d = p.ndim - 2; d >= 0; --d) {
        ++idx[d];
        for (int k = 0; k < N; ++k) off[k] += p.strides[k][d];
        if (idx[d] < p.shape[d]) break;
        for (int k = 0; k < N; ++k) off[k] -= idx[d] * p.strides[k][d];
        idx[d] = 0;
      }
    }
  };
  if (rows * n < 65536) run_rows(0, rows);
  else if (rows == 1) {
    // One long row: split it instead.
    parallel_for(0, n, 16384, [&](int64_t a, int64_t b) {
      int64_t off[N];
      for (int k = 0; k < N; ++k) off[k] = a * inner_st[k];
      inner(b - a, a, off, inner_st);
    });
  } else parallel_for(0, rows, grain, run_rows);
}

}  // namespace sc
