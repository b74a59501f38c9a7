// Weight gradient of stride-1 float convolutions as register-tiled outer products over pixels
// (see conv_wgrad.cc).
#pragma once

#include "conv_params.h"

namespace sc {

// Stride 1, not depthwise.
bool conv_wgrad_outer_supported(const conv::ConvP& p);

// gw [OC, C/G, KH, KW] (overwritten) = sum over images and output pixels of gy x (shifted
// input); gb [OC] (when not null, overwritten) = the sum of gy over images and pixels. The sums
// do not depend on the thread count.
void conv_wgrad_outer(const conv::ConvP& p, const float* x, const float* gy, float* gw, float* gb);

}  // namespace sc
