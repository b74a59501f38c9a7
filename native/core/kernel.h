// The contract between the op table (TypeScript) and every kernel, on every backend.
//
// TypeScript validates shapes, dtypes and attributes, allocates outputs and passes concrete,
// checked arguments. A kernel receives TArgs (data pointer already offset to the first element,
// dtype, shape, strides in elements) and Attrs. Unless an op says otherwise, inputs are
// contiguous and outputs are contiguous and freshly allocated (not zeroed).
// Kernels register themselves by name and backend with SC_KERNEL; there is no central list.
#pragma once
#include <cstdint>
#include <cstddef>
#include <string>
#include <vector>
#include <map>
#include <stdexcept>

namespace sc {

enum class DType : int { f32 = 0, f64 = 1, i32 = 2, u8 = 3, i64 = 4 };
enum class Backend : int { cpu = 0, cuda = 1 };

inline size_t dtype_size(DType d) {
  switch (d) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::i32: return 4;
    case DType::u8: return 1;
    case DType::i64: return 8;
  }
  return 0;
}
const char* dtype_name(DType d);

constexpr int kMaxDims = 8;

struct TArg {
  void* data = nullptr;  // points at element 0 of the view (storage offset applied)
  DType dtype = DType::f32;
  int ndim = 0;
  int64_t shape[kMaxDims] = {0};
  int64_t strides[kMaxDims] = {0};  // in elements; 0 for broadcast dimensions

  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= shape[i];
    return n;
  }
  int64_t dim(int i) const { return shape[i < 0 ? i + ndim : i]; }
  template <typename T> T* ptr() const { return static_cast<T*>(data); }
  bool contiguous() const {
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; --i) {
      if (shape[i] != 1 && strides[i] != s) return false;
      s *= shape[i];
    }
    return true;
  }
};

// Attributes: numbers, lists of numbers, strings. Missing required attributes are an error
// (the op table should have filled defaults, so this names a programming error clearly).
struct Attrs {
  std::map<std::string, double> nums;
  std::map<std::string, std::vector<double>> lists;
  std::map<std::string, std::string> strs;

  double num(const std::string& k) const;
  double num(const std::string& k, double def) const;
  int64_t i(const std::string& k) const { return static_cast<int64_t>(num(k)); }
  int64_t i(const std::string& k, int64_t def) const { return static_cast<int64_t>(num(k, (double)def)); }
  bool b(const std::string& k, bool def = false) const { return num(k, def ? 1.0 : 0.0) != 0.0; }
  std::vector<int64_t> ints(const std::string& k) const;
  std::vector<double> list(const std::string& k) const;
  std::string str(const std::string& k, const std::string& def = "") const;
};

using KernelFn = void (*)(const std::vector<TArg>& in, const std::vector<TArg>& out, const Attrs& attrs);

struct KernelRegistry {
  static void add(const char* name, Backend be, KernelFn fn);
  static KernelFn find(const std::string& name, Backend be);
  static std::vector<std::string> names(Backend be);
};

// Errors thrown by kernels become JavaScript Errors carrying the message.
struct KernelError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

#define SC_CONCAT_(a, b) a##b
#define SC_CONCAT(a, b) SC_CONCAT_(a, b)
// SC_KERNEL("add", cpu, add_cpu);  registers at load time.
#define SC_KERNEL(name, backend, fn)                                                        \
  static const int SC_CONCAT(sc_kernel_reg_, __LINE__) =                                    \
      (::sc::KernelRegistry::add(name, ::sc::Backend::backend, fn), 0)

// Dispatch a kernel template on any dtype: runs the statement with T bound to the element type
// (nothing runs for an unknown dtype).
#define SC_ANY_DISPATCH(dtype, T, ...)                                      \
  do {                                                                      \
    switch (dtype) {                                                        \
      case ::sc::DType::f32: { using T = float; __VA_ARGS__; } break;       \
      case ::sc::DType::f64: { using T = double; __VA_ARGS__; } break;      \
      case ::sc::DType::i32: { using T = int32_t; __VA_ARGS__; } break;     \
      case ::sc::DType::u8: { using T = uint8_t; __VA_ARGS__; } break;      \
      case ::sc::DType::i64: { using T = int64_t; __VA_ARGS__; } break;     \
    }                                                                       \
  } while (0)

// Dispatch a float kernel template on f32/f64.
#define SC_FLOAT_DISPATCH(dtype, T, ...)                                                    \
  do {                                                                                      \
    if ((dtype) == ::sc::DType::f32) { using T = float; __VA_ARGS__; }                      \
    else if ((dtype) == ::sc::DType::f64) { using T = double; __VA_ARGS__; }                \
    else throw ::sc::KernelError(std::string("unsupported dtype ") + ::sc::dtype_name(dtype)); \
  } while (0)

}  // namespace sc
