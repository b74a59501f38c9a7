// Argument checks of "bmm" (batched matrix multiply on contiguous 3-D tensors), shared by the
// CPU backend (native/kernels/gemm.cc) and the CUDA backend (native/cuda/gemm.cu). Plain C++.
//   a [B,M,K] (or [B,K,M] with transA), b [B,K,N] (or [B,N,K] with transB) -> out [B,M,N].
#pragma once
#include <cstdint>
#include <vector>

#include "../core/kernel.h"

namespace sc {

struct BmmP {
  bool tA, tB;
  int64_t Bn, M, N, K;
};

inline BmmP check_bmm(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& attrs) {
  if (in.size() != 2 || out.size() != 1) throw KernelError("bmm: expected 2 inputs, 1 output");
  const TArg &a = in[0], &b = in[1], &c = out[0];
  const bool tA = attrs.b("transA"), tB = attrs.b("transB");
  if (a.ndim != 3 || b.ndim != 3 || c.ndim != 3) throw KernelError("bmm: operands must be 3-D");
  if (a.dtype != b.dtype || a.dtype != c.dtype) throw KernelError("bmm: dtype mismatch");
  if (!a.contiguous() || !b.contiguous() || !c.contiguous())
    throw KernelError("bmm: operands must be contiguous");
  const int64_t Bn = a.shape[0];
  const int64_t M = tA ? a.shape[2] : a.shape[1], K = tA ? a.shape[1] : a.shape[2];
  const int64_t Kb = tB ? b.shape[2] : b.shape[1], N = tB ? b.shape[1] : b.shape[2];
  if (b.shape[0] != Bn || c.shape[0] != Bn) throw KernelError("bmm: batch size mismatch");
  if (Kb != K) throw KernelError("bmm: inner dimensions differ");
  if (c.shape[1] != M || c.shape[2] != N) throw KernelError("bmm: output shape mismatch");
  if (M < 0 || N < 0 || K < 0 || Bn < 0) throw KernelError("bmm: negative dimension");
  return {tA, tB, Bn, M, N, K};
}

}  // namespace sc
