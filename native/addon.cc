// The N-API surface of scalpel: storage calls (alloc, release, copies, fill) and one entry for
// every op, run(kernel, backend, inputs, outputs, attrs). Shapes, broadcasting and validation
// live in TypeScript; this file only converts arguments and guards against anything that could
// read or write outside a storage.
#define NAPI_VERSION 8
#include <napi.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <stdexcept>
#include <string>
#include <vector>

#include "core/kernel.h"
#include "core/parallel.h"
#include "core/storage.h"
#include "kernels/conv_cpu.h"
#include "kernels/conv_winograd.h"
#include "kernels/gemm.h"

namespace {

using namespace sc;

std::atomic<bool> g_shutting_down{false};

// Storage handles are plain numbers: an index into this table plus a generation, so that a
// stale number (a disposed tensor) is recognised after its slot is reused. Numbers need no
// N-API finalizer: Node runs finalizers only when the event loop turns, so with one External
// per storage a synchronous training loop grew its RSS by the finalizers' bookkeeping although
// every storage was released at once (issue 13, #8). JS releases explicitly; a
// FinalizationRegistry on the JS side is the backstop for storages it forgot.
// handle = generation * 2^24 + slot (both < 2^24: exact in a double).
class HandleTable {
 public:
  double add(Storage* s) {
    std::lock_guard<std::mutex> g(mu_);
    uint32_t slot;
    if (!free_.empty()) {
      slot = free_.back();
      free_.pop_back();
    } else {
      if (slots_.size() >= kSlots) throw std::runtime_error("too many live storages (16M)");
      slot = static_cast<uint32_t>(slots_.size());
      slots_.push_back({nullptr, 0});
    }
    slots_[slot].s = s;
    return static_cast<double>(static_cast<uint64_t>(slots_[slot].gen) * kSlots + slot);
  }
  // The storage of a live handle, or null for a released or unknown one.
  Storage* get(double h) {
    uint32_t slot, gen;
    if (!decode(h, slot, gen)) return nullptr;
    std::lock_guard<std::mutex> g(mu_);
    return slot < slots_.size() && slots_[slot].gen == gen ? slots_[slot].s : nullptr;
  }
  // Removes a live handle and returns its storage (null when already released).
  Storage* take(double h) {
    uint32_t slot, gen;
    if (!decode(h, slot, gen)) return nullptr;
    std::lock_guard<std::mutex> g(mu_);
    if (slot >= slots_.size() || slots_[slot].gen != gen || !slots_[slot].s) return nullptr;
    Storage* s = slots_[slot].s;
    slots_[slot].s = nullptr;
    slots_[slot].gen = (slots_[slot].gen + 1) % kSlots;
    free_.push_back(slot);
    return s;
  }

 private:
  static constexpr uint64_t kSlots = 1u << 24;
  static bool decode(double h, uint32_t& slot, uint32_t& gen) {
    if (!(h >= 0) || h >= static_cast<double>(kSlots * kSlots) || h != static_cast<double>(static_cast<uint64_t>(h))) return false;
    const uint64_t v = static_cast<uint64_t>(h);
    slot = static_cast<uint32_t>(v % kSlots);
    gen = static_cast<uint32_t>(v / kSlots);
    return true;
  }
  struct Slot {
    Storage* s;
    uint32_t gen;
  };
  std::mutex mu_;
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_;
};

HandleTable g_handles;

Napi::Error err(Napi::Env env, const std::string& m) { return Napi::Error::New(env, m); }

Backend parse_backend(Napi::Env env, const Napi::Value& v) {
  const int b = v.As<Napi::Number>().Int32Value();
  if (b != 0 && b != 1) throw err(env, "unknown backend id " + std::to_string(b));
  const Backend be = static_cast<Backend>(b);
  BackendStatus st = init_backend(be);
  if (!st.available) throw err(env, "device 'cuda' is not available: " + st.reason);
  return be;
}

Storage* get_storage(Napi::Env env, const Napi::Value& v) {
  if (!v.IsNumber()) throw err(env, "expected a storage handle");
  Storage* s = g_handles.get(v.As<Napi::Number>().DoubleValue());
  if (!s) throw err(env, "storage was already released (tensor used after dispose)");
  return s;
}

// The kernel queue (below, with run()): runs what is queued, throws a queued call's failure.
void queue_flush(Napi::Env env);

Napi::Value Alloc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Backend be = parse_backend(env, info[0]);
  const double nbytes = info[1].As<Napi::Number>().DoubleValue();
  if (!(nbytes >= 0) || nbytes > 1e13) throw err(env, "invalid allocation size " + std::to_string(nbytes));
  Storage* s;
  try {
    s = storage_new(be, static_cast<size_t>(nbytes));
    return Napi::Number::New(env, g_handles.add(s));
  } catch (const std::exception& e) {
    throw err(env, e.what());
  }
}

// release(handle): gives the storage back at once; releasing twice is a no-op.
Napi::Value Release(const Napi::CallbackInfo& info) {
  if (!info[0].IsNumber()) throw err(info.Env(), "release: expected a storage handle");
  if (Storage* s = g_handles.take(info[0].As<Napi::Number>().DoubleValue())) storage_release(s);
  return info.Env().Undefined();
}

// copyIn(handle, byteOffset, typedArray)
Napi::Value CopyIn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  queue_flush(env);
  Storage* s = get_storage(env, info[0]);
  const double off = info[1].As<Napi::Number>().DoubleValue();
  Napi::TypedArray ta = info[2].As<Napi::TypedArray>();
  const size_t n = ta.ByteLength();
  if (off < 0 || off + n > s->bytes) throw err(env, "copyIn out of bounds");
  const uint8_t* src = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  allocator(s->backend).memory()->copy_from_host(static_cast<uint8_t*>(s->ptr) + (size_t)off, src, n);
  return env.Undefined();
}

// copyOut(handle, byteOffset, nbytes) -> ArrayBuffer (a copy)
Napi::Value CopyOut(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  queue_flush(env);
  Storage* s = get_storage(env, info[0]);
  const double off = info[1].As<Napi::Number>().DoubleValue();
  const double n = info[2].As<Napi::Number>().DoubleValue();
  if (off < 0 || n < 0 || off + n > s->bytes) throw err(env, "copyOut out of bounds");
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, static_cast<size_t>(n));
  auto* mem = allocator(s->backend).memory();
  mem->synchronize();
  mem->copy_to_host(ab.Data(), static_cast<uint8_t*>(s->ptr) + (size_t)off, (size_t)n);
  return ab;
}

// hostView(handle) -> ArrayBuffer over the storage's own memory (CPU only; zero-copy interop).
// The view keeps the storage alive until the ArrayBuffer is garbage collected.
Napi::Value HostView(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Storage* s = get_storage(env, info[0]);
  if (s->backend != Backend::cpu) throw err(env, "hostView: storage is not on the cpu");
  queue_flush(env);
  s->host_visible.store(true);
  storage_retain(s);
  return Napi::ArrayBuffer::New(env, s->ptr, s->bytes, [](Napi::Env, void*, Storage* s) {
    if (!g_shutting_down.load()) storage_release(s);
  }, s);
}

// wrapHost(arrayBuffer) -> a CPU storage over the ArrayBuffer's own memory (zero-copy interop).
// The storage holds a reference that keeps the ArrayBuffer alive until the storage is freed.
Napi::Value WrapHost(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArrayBuffer()) throw err(env, "wrapHost: expected an ArrayBuffer");
  Napi::ArrayBuffer ab = info[0].As<Napi::ArrayBuffer>();
  auto* s = new Storage();
  s->ptr = ab.Data();
  s->bytes = ab.ByteLength();
  s->backend = Backend::cpu;
  s->external = true;
  auto* ref = new Napi::Reference<Napi::ArrayBuffer>(Napi::Persistent(ab));
  s->on_release = [ref] { delete ref; };
  return Napi::Number::New(env, g_handles.add(s));
}

// Parses one argument tuple; `host` becomes true when JavaScript can touch its bytes directly.
bool parse_targ(Napi::Env env, const Napi::Value& v, TArg& t, Backend be, bool& host, std::string& why) {
  Napi::Array a = v.As<Napi::Array>();
  Storage* s = get_storage(env, a.Get(0u));
  if (s->external || s->host_visible.load(std::memory_order_relaxed)) host = true;
  if (s->backend != be) {
    why = "tensor is on another device than the kernel";
    return false;
  }
  const int64_t off = a.Get(1u).As<Napi::Number>().Int64Value();
  t.dtype = static_cast<DType>(a.Get(2u).As<Napi::Number>().Int32Value());
  Napi::Array shape = a.Get(3u).As<Napi::Array>();
  Napi::Array strides = a.Get(4u).As<Napi::Array>();
  t.ndim = static_cast<int>(shape.Length());
  if (t.ndim > kMaxDims || strides.Length() != shape.Length()) {
    why = "too many dimensions (max 8)";
    return false;
  }
  // Bounds: the lowest and highest element the view can touch must lie inside the storage.
  int64_t lo = off, hi = off;
  bool empty = false;
  for (int i = 0; i < t.ndim; ++i) {
    t.shape[i] = shape.Get(i).As<Napi::Number>().Int64Value();
    t.strides[i] = strides.Get(i).As<Napi::Number>().Int64Value();
    if (t.shape[i] < 0) {
      why = "negative dimension";
      return false;
    }
    if (t.shape[i] == 0) empty = true;
    const int64_t span = (t.shape[i] - 1) * t.strides[i];
    if (span < 0) lo += span; else hi += span;
  }
  const int64_t es = static_cast<int64_t>(dtype_size(t.dtype));
  if (!empty && (lo < 0 || (hi + 1) * es > static_cast<int64_t>(s->bytes))) {
    why = "view exceeds its storage";
    return false;
  }
  t.data = static_cast<uint8_t*>(s->ptr) + off * es;
  return true;
}

void parse_attrs(const Napi::Object& o, Attrs& at) {
  Napi::Array keys = o.GetPropertyNames();
  for (uint32_t i = 0; i < keys.Length(); ++i) {
    std::string k = keys.Get(i).As<Napi::String>().Utf8Value();
    Napi::Value v = o.Get(k);
    if (v.IsNumber()) at.nums[k] = v.As<Napi::Number>().DoubleValue();
    else if (v.IsBoolean()) at.nums[k] = v.As<Napi::Boolean>().Value() ? 1.0 : 0.0;
    else if (v.IsString()) at.strs[k] = v.As<Napi::String>().Utf8Value();
    else if (v.IsArray()) {
      Napi::Array a = v.As<Napi::Array>();
      std::vector<double> l(a.Length());
      for (uint32_t j = 0; j < a.Length(); ++j) l[j] = a.Get(j).As<Napi::Number>().DoubleValue();
      at.lists[k] = std::move(l);
    }
  }
}

struct ParsedCall {
  std::string name;
  Backend be;
  KernelFn fn;
  std::vector<TArg> in, out;
  Attrs attrs;
  bool host_visible = false;  // an argument's bytes are visible to JavaScript (see Storage)
};

ParsedCall parse_call(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ParsedCall c;
  c.name = info[0].As<Napi::String>().Utf8Value();
  c.be = parse_backend(env, info[1]);
  c.fn = KernelRegistry::find(c.name, c.be);
  if (!c.fn) throw err(env, "kernel '" + c.name + "' is not implemented on " + (c.be == Backend::cpu ? "cpu" : "cuda"));
  Napi::Array ins = info[2].As<Napi::Array>(), outs = info[3].As<Napi::Array>();
  std::string why;
  for (uint32_t i = 0; i < ins.Length(); ++i) {
    c.in.emplace_back();
    if (!parse_targ(env, ins.Get(i), c.in.back(), c.be, c.host_visible, why)) throw err(env, c.name + ": input " + std::to_string(i) + ": " + why);
  }
  for (uint32_t i = 0; i < outs.Length(); ++i) {
    c.out.emplace_back();
    if (!parse_targ(env, outs.Get(i), c.out.back(), c.be, c.host_visible, why)) throw err(env, c.name + ": output " + std::to_string(i) + ": " + why);
  }
  if (info.Length() > 4 && info[4].IsObject()) parse_attrs(info[4].As<Napi::Object>(), c.attrs);
  return c;
}

// The kernel queue. A CPU kernel call is checked and converted when JavaScript makes it (errors
// in its arguments are thrown there), then queued; the queue runs when it is full, before
// anything that reads, writes or measures memory from JavaScript (copies, host views, memory
// statistics, synchronize, timing) and before a call that cannot wait. Why: between two kernels
// the JavaScript of the next op (dispatch, shape inference, autograd) runs on caches the kernel
// just filled with tensors, and took 2-3x its warm time (CMUNeXt-S's 128 px training step: 16 ms
// of JavaScript between 439 kernels against 4-7 ms with the kernels removed); queued, the
// JavaScript of many ops runs back to back, then their kernels do, each still finding its
// producer's output where the producer left it.
// Memory: a storage released while calls naming it are queued goes back to the cache at once.
// Handing its block to a new storage is safe, since the new owner's kernels are queued after the
// old ones (and copies into it run the queue first); giving a block back to the system or moving
// it is not, so the CPU allocator runs the queue before it does either (set_before_give_back).
// The peak memory is therefore what it is without the queue. Calls naming memory JavaScript can
// see (host views, wrapped ArrayBuffers) run at once, after the queue, so what JavaScript reads
// or writes there is never stale. A kernel that fails in the queue throws from the next call that
// runs or checks the queue, naming the kernel; the calls queued after it are dropped (they would
// read what it did not write).
// Only the thread that loaded the addon first queues (worker threads run each call at once).
class KernelQueue {
 public:
  KernelQueue() {
    const char* e = std::getenv("SCALPEL_KERNEL_QUEUE");
    if (e) depth_ = std::max(0, std::atoi(e));
  }
  int depth() const { return depth_; }
  void set_depth(int d) { depth_ = std::max(0, d); }
  bool queueing() const { return depth_ > 1 && std::this_thread::get_id() == owner_; }
  size_t size() {
    std::lock_guard<std::recursive_mutex> g(mu_);
    return calls_.size();
  }
  void set_owner(std::thread::id t) { owner_ = t; }

  // Queues c; runs the queue once it holds depth() calls.
  void push(Napi::Env env, ParsedCall&& c) {
    {
      std::lock_guard<std::recursive_mutex> g(mu_);
      calls_.push_back(std::move(c));
      if ((int)calls_.size() < depth_) return;
    }
    flush(env);
  }

  // Runs every queued call in order; a failure is kept for the next flush(env) to throw.
  void drain() {
    std::lock_guard<std::recursive_mutex> g(mu_);
    if (draining_ || calls_.empty()) return;
    draining_ = true;
    for (size_t i = 0; i < calls_.size(); ++i) {
      ParsedCall& c = calls_[i];
      try {
        c.fn(c.in, c.out, c.attrs);
      } catch (const std::exception& e) {
        if (error_.empty()) {
          error_ = c.name + ": " + e.what() + " (a queued kernel call" +
                   (i + 1 < calls_.size() ? "; the " + std::to_string(calls_.size() - i - 1) + " calls queued after it were dropped)" : ")");
        }
        break;
      }
    }
    calls_.clear();
    draining_ = false;
  }

  // drain(), then throws the first failure since the last throw.
  void flush(Napi::Env env) {
    drain();
    std::lock_guard<std::recursive_mutex> g(mu_);
    if (error_.empty()) return;
    const std::string m = std::move(error_);
    error_.clear();
    throw err(env, m);
  }

 private:
  int depth_ = 256;
  std::thread::id owner_;
  std::recursive_mutex mu_;
  bool draining_ = false;
  std::vector<ParsedCall> calls_;
  std::string error_;
};

// Never destroyed: at exit nothing queued needs to run and the allocator may already be gone.
KernelQueue& kernel_queue() {
  static KernelQueue* q = new KernelQueue();
  return *q;
}

// run(kernel, backend, inputs, outputs, attrs)
Napi::Value Run(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ParsedCall c = parse_call(info);
  KernelQueue& q = kernel_queue();
  if (q.queueing() && c.be == Backend::cpu && !c.host_visible) {
    q.push(env, std::move(c));
    return env.Undefined();
  }
  q.flush(env);
  try {
    c.fn(c.in, c.out, c.attrs);
  } catch (const std::exception& e) {
    throw err(env, c.name + ": " + e.what());
  }
  return env.Undefined();
}

// flush(): runs the queued kernel calls now.
Napi::Value Flush(const Napi::CallbackInfo& info) {
  kernel_queue().flush(info.Env());
  return info.Env().Undefined();
}

// setKernelQueue(depth) / kernelQueue(): calls queued before they run (0 or 1: each at once).
Napi::Value SetKernelQueue(const Napi::CallbackInfo& info) {
  kernel_queue().flush(info.Env());
  kernel_queue().set_depth(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}
Napi::Value KernelQueueDepth(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), kernel_queue().depth()); }
// queued(): calls waiting in the queue now (tests, debugging).
Napi::Value KernelQueueSize(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), (double)kernel_queue().size()); }

void queue_flush(Napi::Env env) { kernel_queue().flush(env); }

// timeKernel(kernel, backend, inputs, outputs, attrs, iters) -> ms per call (benchmarks; CUDA
// events on the GPU).
Napi::Value TimeKernel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ParsedCall c = parse_call(info);
  queue_flush(env);
  const int iters = std::max(1, info[5].As<Napi::Number>().Int32Value());
  double ms = 0;
  try {
    c.fn(c.in, c.out, c.attrs);  // warm-up
    ms = allocator(c.be).memory()->time_ms([&] { c.fn(c.in, c.out, c.attrs); }, iters);
  } catch (const std::exception& e) {
    throw err(env, c.name + ": " + e.what());
  }
  return Napi::Number::New(env, ms);
}

Napi::Value Kernels(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int b = info[0].As<Napi::Number>().Int32Value();
  Napi::Array r = Napi::Array::New(env);
  if (b != 0 && b != 1) return r;
  auto names = KernelRegistry::names(static_cast<Backend>(b));
  for (uint32_t i = 0; i < names.size(); ++i) r.Set(i, names[i]);
  return r;
}

Napi::Value BackendInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int b = info[0].As<Napi::Number>().Int32Value();
  BackendStatus st = init_backend(static_cast<Backend>(b == 1 ? 1 : 0));
  Napi::Object o = Napi::Object::New(env);
  o.Set("available", st.available);
  o.Set("emulated", st.emulated);
  o.Set("deviceCount", st.device_count);
  o.Set("deviceName", st.device_name);
  o.Set("reason", st.reason);
  return o;
}

Napi::Value Memory(const Napi::CallbackInfo& info) {
  queue_flush(info.Env());
  Napi::Env env = info.Env();
  const int b = info[0].As<Napi::Number>().Int32Value();
  Napi::Object o = Napi::Object::New(env);
  const Backend be = static_cast<Backend>(b == 1 ? 1 : 0);
  if (!backend_available(be)) return o;
  MemoryStats st = allocator(be).stats();
  o.Set("storages", (double)st.live_storages);
  o.Set("bytesInUse", (double)st.bytes_in_use);
  o.Set("bytesCached", (double)st.bytes_cached);
  o.Set("peakBytesInUse", (double)st.peak_bytes_in_use);
  return o;
}

// Bytes the C/C++ heap (malloc) has handed out and not taken back, or -1 where unknown: what
// native code and N-API bookkeeping hold outside V8 and outside the tensor allocator.
Napi::Value MallocInUse(const Napi::CallbackInfo& info) {
  queue_flush(info.Env());
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  const struct mallinfo2 mi = mallinfo2();
  return Napi::Number::New(info.Env(), static_cast<double>(mi.uordblks + mi.hblkhd));
#else
  return Napi::Number::New(info.Env(), -1);
#endif
}

Napi::Value EmptyCache(const Napi::CallbackInfo& info) {
  queue_flush(info.Env());
  const int b = info[0].As<Napi::Number>().Int32Value();
  const Backend be = static_cast<Backend>(b == 1 ? 1 : 0);
  if (backend_available(be)) allocator(be).empty_cache();
  return info.Env().Undefined();
}

// resetPeakMemory(backend): the peak restarts from the bytes in use now.
Napi::Value ResetPeakMemory(const Napi::CallbackInfo& info) {
  queue_flush(info.Env());
  const int b = info[0].As<Napi::Number>().Int32Value();
  const Backend be = static_cast<Backend>(b == 1 ? 1 : 0);
  if (backend_available(be)) allocator(be).reset_peak();
  return info.Env().Undefined();
}

// setCacheLimit(backend, bytes): cached blocks above `bytes` are freed (negative: no limit).
Napi::Value SetCacheLimit(const Napi::CallbackInfo& info) {
  queue_flush(info.Env());
  const int b = info[0].As<Napi::Number>().Int32Value();
  const double bytes = info[1].As<Napi::Number>().DoubleValue();
  const Backend be = static_cast<Backend>(b == 1 ? 1 : 0);
  if (backend_available(be)) allocator(be).set_cache_limit(bytes < 0 ? SIZE_MAX : static_cast<size_t>(bytes));
  return info.Env().Undefined();
}

Napi::Value Synchronize(const Napi::CallbackInfo& info) {
  queue_flush(info.Env());
  const int b = info[0].As<Napi::Number>().Int32Value();
  const Backend be = static_cast<Backend>(b == 1 ? 1 : 0);
  if (backend_available(be)) allocator(be).memory()->synchronize();
  return info.Env().Undefined();
}

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  queue_flush(info.Env());
  set_num_threads(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}
Napi::Value NumThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), num_threads()); }

// Benchmark calibration: the float GEMM's ISA path and the measured FMA peak (GFLOP/s).
Napi::Value GemmIsa(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), gemm_isa()); }
Napi::Value FmaPeakGflops(const Napi::CallbackInfo& info) {
  queue_flush(info.Env());
  const int t = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : num_threads();
  return Napi::Number::New(info.Env(), measure_fma_peak_gflops(t < 1 ? 1 : t));
}

// convAlgorithms(xShape, wShape, stride, padding, dilation, groups): the float32 CPU kernel of
// each convolution pass at that shape, { forward, fused, backwardInput, backwardWeight }.
Napi::Value ConvAlgorithmsOf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto ints = [&](int i, const char* what) {
    if (!info[i].IsArray()) throw Napi::TypeError::New(env, std::string("convAlgorithms: ") + what + " must be an array");
    Napi::Array a = info[i].As<Napi::Array>();
    std::vector<double> v;
    for (uint32_t k = 0; k < a.Length(); ++k) v.push_back(a.Get(k).As<Napi::Number>().DoubleValue());
    return v;
  };
  const std::vector<double> xs = ints(0, "the input shape"), ws = ints(1, "the weight shape");
  if (xs.size() != 4 || ws.size() != 4) throw Napi::TypeError::New(env, "convAlgorithms: shapes must be 4-D");
  Attrs a;
  a.lists["stride"] = ints(2, "stride");
  a.lists["padding"] = ints(3, "padding");
  a.lists["dilation"] = ints(4, "dilation");
  a.nums["groups"] = info[5].As<Napi::Number>().DoubleValue();
  int64_t x[4], w[4];
  for (int i = 0; i < 4; ++i) x[i] = (int64_t)xs[i], w[i] = (int64_t)ws[i];
  ConvAlgorithms r;
  try {
    r = conv_cpu_algorithms(conv::make_params(x, w, a));
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("forward", r.forward);
  o.Set("fused", r.fused);
  o.Set("backwardInput", r.backward_input);
  o.Set("backwardWeight", r.backward_weight);
  return o;
}

// setWinograd(on) / winograd(): whether 3x3 convolutions may take the Winograd kernel.
Napi::Value SetWinograd(const Napi::CallbackInfo& info) {
  queue_flush(info.Env());
  conv_winograd_set_enabled(info[0].ToBoolean().Value());
  return info.Env().Undefined();
}
Napi::Value Winograd(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), conv_winograd_enabled()); }

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  static std::once_flag queue_owner;
  std::call_once(queue_owner, [] {
    kernel_queue().set_owner(std::this_thread::get_id());
    allocator(Backend::cpu).set_before_give_back([] { kernel_queue().drain(); });
  });
  napi_add_env_cleanup_hook(env, [](void*) { g_shutting_down.store(true); }, nullptr);
  exports.Set("alloc", Napi::Function::New(env, Alloc));
  exports.Set("release", Napi::Function::New(env, Release));
  exports.Set("copyIn", Napi::Function::New(env, CopyIn));
  exports.Set("copyOut", Napi::Function::New(env, CopyOut));
  exports.Set("hostView", Napi::Function::New(env, HostView));
  exports.Set("wrapHost", Napi::Function::New(env, WrapHost));
  exports.Set("run", Napi::Function::New(env, Run));
  exports.Set("flush", Napi::Function::New(env, Flush));
  exports.Set("setKernelQueue", Napi::Function::New(env, SetKernelQueue));
  exports.Set("kernelQueue", Napi::Function::New(env, KernelQueueDepth));
  exports.Set("queued", Napi::Function::New(env, KernelQueueSize));
  exports.Set("timeKernel", Napi::Function::New(env, TimeKernel));
  exports.Set("kernels", Napi::Function::New(env, Kernels));
  exports.Set("backendInfo", Napi::Function::New(env, BackendInfo));
  exports.Set("memory", Napi::Function::New(env, Memory));
  exports.Set("emptyCache", Napi::Function::New(env, EmptyCache));
  exports.Set("resetPeakMemory", Napi::Function::New(env, ResetPeakMemory));
  exports.Set("setCacheLimit", Napi::Function::New(env, SetCacheLimit));
  exports.Set("mallocInUse", Napi::Function::New(env, MallocInUse));
  exports.Set("synchronize", Napi::Function::New(env, Synchronize));
  exports.Set("setNumThreads", Napi::Function::New(env, SetNumThreads));
  exports.Set("numThreads", Napi::Function::New(env, NumThreads));
  exports.Set("gemmIsa", Napi::Function::New(env, GemmIsa));
  exports.Set("fmaPeakGflops", Napi::Function::New(env, FmaPeakGflops));
  exports.Set("convAlgorithms", Napi::Function::New(env, ConvAlgorithmsOf));
  exports.Set("setWinograd", Napi::Function::New(env, SetWinograd));
  exports.Set("winograd", Napi::Function::New(env, Winograd));
  return exports;
}

}  // namespace

NODE_API_MODULE(scalpel, Init)
