// Direct (implicit-GEMM) float convolution for stride-1 kernels larger than 1x1, with a fused
// per-channel epilogue. See conv_direct.cc for the register tiling.
#pragma once
#include <cstdint>

#include "conv_params.h"

namespace sc {

enum class ConvAct : int { none = 0, relu = 1, gelu = 2 };

// Applied per output channel oc, in this order (null pointers are skipped):
//   y = act(acc + bias[oc]) * scale[oc] + shift[oc]
// which covers conv -> BN -> act (BN folded into the weights and bias) and conv -> act -> BN
// (BN as scale/shift after the activation).
struct ConvEpilogue {
  const float* bias = nullptr;
  const float* scale = nullptr;
  const float* shift = nullptr;
  ConvAct act = ConvAct::none;
};

// True for the shapes the direct kernel handles: stride 1, not depthwise, a kernel with more
// than one tap (1x1 convs are plain GEMMs already).
bool conv_direct_supported(const conv::ConvP& p);

// y = epilogue(conv(x, w)); x [N, C, H, W], w [OC, C/G, KH, KW], y [N, OC, OH, OW].
void conv_direct_forward(const conv::ConvP& p, const float* x, const float* w,
                         const ConvEpilogue& ep, float* y);

// True when the input gradient of this (stride-1) convolution can run as a direct forward
// convolution of gy with the transposed, flipped kernel (needs padding <= kernel extent - 1).
bool conv_direct_backward_input_supported(const conv::ConvP& p);

// gx = conv_transpose(gy, w) for stride 1, through conv_direct_forward.
void conv_direct_backward_input(const conv::ConvP& p, const float* gy, const float* w, float* gx);


}  // namespace sc
