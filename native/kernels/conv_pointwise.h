// 1x1 float convolutions (stride 1, no padding): register tiles over a per-chunk copy of the
// input (see conv_pointwise.cc).
#pragma once

#include "conv_params.h"

namespace sc {

// 1x1, stride 1, no padding, not depthwise.
bool conv_pointwise_supported(const conv::ConvP& p);

// y = conv(x, w) + bias (bias may be null).
void conv_pointwise_forward(const conv::ConvP& p, const float* x, const float* w, const float* bias, float* y);

// gx = the input gradient of the convolution, from gy (overwritten).
void conv_pointwise_backward_input(const conv::ConvP& p, const float* gy, const float* w, float* gx);

}  // namespace sc
