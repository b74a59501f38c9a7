#include "kernel.h"

#include <algorithm>
#include <unordered_map>

namespace sc {

const char* dtype_name(DType d) {
  switch (d) {
    case DType::f32: return "float32";
    case DType::f64: return "float64";
    case DType::i32: return "int32";
    case DType::u8: return "uint8";
    case DType::i64: return "int64";
  }
  return "unknown";
}

double Attrs::num(const std::string& k) const {
  auto it = nums.find(k);
  if (it == nums.end()) throw KernelError("missing numeric attribute '" + k + "'");
  return it->second;
}
double Attrs::num(const std::string& k, double def) const {
  auto it = nums.find(k);
  return it == nums.end() ? def : it->second;
}
std::vector<double> Attrs::list(const std::string& k) const {
  auto it = lists.find(k);
  if (it == lists.end()) throw KernelError("missing list attribute '" + k + "'");
  return it->second;
}
std::vector<int64_t> Attrs::ints(const std::string& k) const {
  std::vector<int64_t> r;
  for (double v : list(k)) r.push_back(static_cast<int64_t>(v));
  return r;
}
std::string Attrs::str(const std::string& k, const std::string& def) const {
  auto it = strs.find(k);
  return it == strs.end() ? def : it->second;
}

namespace {
// Function-local and never destroyed, so registration from static initialisers in any
// translation unit is safe regardless of initialisation order.
std::unordered_map<std::string, KernelFn>& table(Backend be) {
  static auto* t = new std::unordered_map<std::string, KernelFn>[2];
  return t[static_cast<int>(be)];
}
}  // namespace

void KernelRegistry::add(const char* name, Backend be, KernelFn fn) { table(be)[name] = fn; }

KernelFn KernelRegistry::find(const std::string& name, Backend be) {
  auto& t = table(be);
  auto it = t.find(name);
  return it == t.end() ? nullptr : it->second;
}

std::vector<std::string> KernelRegistry::names(Backend be) {
  std::vector<std::string> r;
  for (auto& kv : table(be)) r.push_back(kv.first);
  std::sort(r.begin(), r.end());
  return r;
}

}  // namespace sc
