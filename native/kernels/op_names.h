// Operation names of the elementwise, reduction and pad kernels and their enums, shared by the
// CPU backend (native/kernels/*.cc) and the CUDA backend (native/cuda/*.cu), so both accept the
// same names and report the same errors. Plain C++ (also compiled by nvcc; the enums are passed
// to device code).
#pragma once
#include <string>
#include <utility>

#include "../core/kernel.h"

namespace sc {

enum class UnaryOp : int { neg, exp, log, sqrt, abs, relu, gelu, sigmoid, tanh, square, reciprocal, sin, cos, clamp, affine, pow, sign };

inline UnaryOp parse_unary(const std::string& s) {
  using U = UnaryOp;
  static const std::pair<const char*, U> names[] = {
      {"neg", U::neg}, {"exp", U::exp}, {"log", U::log}, {"sqrt", U::sqrt}, {"abs", U::abs},
      {"relu", U::relu}, {"gelu", U::gelu}, {"sigmoid", U::sigmoid}, {"tanh", U::tanh},
      {"square", U::square}, {"reciprocal", U::reciprocal}, {"sin", U::sin}, {"cos", U::cos},
      {"clamp", U::clamp}, {"affine", U::affine}, {"pow", U::pow}, {"sign", U::sign}};
  for (auto& n : names)
    if (s == n.first) return n.second;
  throw KernelError("unknown unary op '" + s + "'");
}

// eq..ge are the comparisons (uint8 results); the *_grad ops are the fused activation derivatives.
enum class BinaryOp : int { add, sub, mul, div, pow, maximum, minimum, eq, ne, lt, le, gt, ge, relu_grad, gelu_grad, sigmoid_grad, tanh_grad };

inline BinaryOp parse_binary(const std::string& s) {
  using B = BinaryOp;
  static const std::pair<const char*, B> names[] = {
      {"add", B::add}, {"sub", B::sub}, {"mul", B::mul}, {"div", B::div}, {"pow", B::pow},
      {"maximum", B::maximum}, {"minimum", B::minimum}, {"eq", B::eq}, {"ne", B::ne},
      {"lt", B::lt}, {"le", B::le}, {"gt", B::gt}, {"ge", B::ge}, {"relu_grad", B::relu_grad},
      {"gelu_grad", B::gelu_grad}, {"sigmoid_grad", B::sigmoid_grad}, {"tanh_grad", B::tanh_grad}};
  for (auto& n : names)
    if (s == n.first) return n.second;
  throw KernelError("unknown binary op '" + s + "'");
}

enum class ReduceOp : int { sum, mean, max, min, argmax, argmin };

inline ReduceOp parse_reduce(const std::string& s) {
  using R = ReduceOp;
  if (s == "sum") return R::sum;
  if (s == "mean") return R::mean;
  if (s == "max") return R::max;
  if (s == "min") return R::min;
  if (s == "argmax") return R::argmax;
  if (s == "argmin") return R::argmin;
  throw KernelError("unknown reduction '" + s + "'");
}

enum class PadMode : int { constant, reflect, replicate };

inline PadMode parse_pad_mode(const std::string& m) {
  if (m == "constant") return PadMode::constant;
  if (m == "reflect") return PadMode::reflect;
  if (m == "replicate") return PadMode::replicate;
  throw KernelError("pad: unknown mode '" + m + "'");
}

}  // namespace sc
