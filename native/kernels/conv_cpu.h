// What the float32 CPU convolution runs for a given shape, per pass (conv.cc makes the choice).
#pragma once

#include "conv_params.h"

namespace sc {

// Kernel names: "depthwise", "winograd" (conv_winograd.cc), "direct" (conv_direct.cc) or "gemm"
// (im2col / packed GEMM). fused is conv2d_fused, the inference path with a fused epilogue.
struct ConvAlgorithms {
  const char* forward;
  const char* fused;
  const char* backward_input;
  const char* backward_weight;
};

ConvAlgorithms conv_cpu_algorithms(const conv::ConvP& p);

}  // namespace sc
