// Winograd F(4x4, 3x3) float convolution for stride-1, undilated 3x3 kernels over many
// channels, with the direct kernel's fused epilogue. See conv_winograd.cc.
#pragma once
#include <cstdint>

#include "conv_direct.h"
#include "conv_params.h"

namespace sc {

// Whether 3x3 convolutions may take this kernel: on unless the environment has
// SCALPEL_WINOGRAD=0 or conv_winograd_set_enabled(false) was called (sc.setWinograd: the direct
// kernel is about ten times closer to a float64 sum, at half the speed or less).
bool conv_winograd_enabled();
void conv_winograd_set_enabled(bool on);

// True where this kernel runs the convolution: enabled, an AVX2 CPU, 3x3, stride 1, no
// dilation, padding <= 2, at least 16 input and output channels per group and 32 output tiles.
bool conv_winograd_supported(const conv::ConvP& p);

// y = epilogue(conv(x, w)); the weights are transformed on every call.
void conv_winograd_forward(const conv::ConvP& p, const float* x, const float* w,
                           const ConvEpilogue& ep, float* y);

// gx = conv_transpose(gy, w) for a convolution whose transposed form (gy padded by 2 - pad,
// the kernel flipped and transposed per group) conv_winograd_supported takes.
bool conv_winograd_backward_input_supported(const conv::ConvP& p);
void conv_winograd_backward_input(const conv::ConvP& p, const float* gy, const float* w,
                                  float* gx);

// gw = the weight gradient [OC, C/G, 3, 3] (overwritten) of a convolution conv_winograd_supported
// takes, whose sums in the transformed domain (36 floats per channel pair) fit 40 MB or whose
// transformed tiles fit 32 MB at once.
bool conv_winograd_backward_weight_supported(const conv::ConvP& p);
void conv_winograd_backward_weight(const conv::ConvP& p, const float* x, const float* gy, float* gw);

}  // namespace sc
