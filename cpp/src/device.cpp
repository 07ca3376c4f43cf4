#include "device.h"

#include <atomic>
#include <string>

#include "check.h"
#include "kvinfer/errors.h"
#include "kvinfer/runtime.h"
#include "kvinfer/tensor.h"

namespace kvinfer {
namespace detail {

void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw Error(ErrorKind::kCudaError, std::string(what) + ": " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e));
}

DeviceGuard::DeviceGuard(int device) {
  check_cuda(cudaGetDevice(&prev_), "cudaGetDevice");
  if (prev_ != device) check_cuda(cudaSetDevice(device), "cudaSetDevice");
  else prev_ = -1;  // nothing to restore
}

DeviceGuard::~DeviceGuard() {
  if (prev_ >= 0) cudaSetDevice(prev_);
}

int device_cc(int device) {
  static std::atomic<int> cache[64] = {};  // 0: not read yet
  if (device < 0) return 0;
  if (device < 64 && cache[device].load(std::memory_order_relaxed)) return cache[device].load(std::memory_order_relaxed);
  int major = 0, minor = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  if (device < 64) cache[device].store(major * 10 + minor, std::memory_order_relaxed);
  return major * 10 + minor;
}

}  // namespace detail

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver/device" error
    return 0;
  }
  return n;
}

std::string device_description(int device) {
  int n = device_count();
  if (device < 0 || device >= n)
    throw Error(ErrorKind::kValueError, "device: expected an index in [0, " + std::to_string(n) + "), got " +
                                            std::to_string(device));
  cudaDeviceProp p{};
  detail::check_cuda(cudaGetDeviceProperties(&p, device), "cudaGetDeviceProperties");
  return std::string(p.name) + " (sm_" + std::to_string(p.major) + std::to_string(p.minor) + ", " +
         std::to_string(p.multiProcessorCount) + " SMs, " + std::to_string(p.totalGlobalMem >> 20) + " MiB)";
}

int device_sm_count(int device) {
  int n = device_count();
  if (device < 0 || device >= n)
    throw Error(ErrorKind::kValueError, "device: expected an index in [0, " + std::to_string(n) + "), got " +
                                            std::to_string(device));
  int sms = 0;
  detail::check_cuda(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute");
  return sms;
}

void stream_synchronize(cudaStream_t stream) { detail::check_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize"); }

void copy_async(const TensorView& dst, const TensorView& src, cudaStream_t stream) {
  detail::expect_dtype(src, {dst.dtype});
  for (const TensorView* t : {&dst, &src}) {
    int64_t want = 1;
    for (int i = t->ndim - 1; i >= 0; --i) {
      if (t->shape[i] > 1 && t->strides[i] != want)
        detail::fail(ErrorKind::kValueError, std::string(t->name) + ": must be contiguous");
      want *= t->shape[i];
    }
  }
  if (dst.numel() < src.numel())
    detail::fail(ErrorKind::kValueError, std::string(dst.name) + ": has " + std::to_string(dst.numel()) +
                                             " elements, needs " + std::to_string(src.numel()));
  detail::expect_cuda_same_device({&dst});
  if (src.numel() == 0) return;
  detail::DeviceGuard guard(dst.device_id);
  detail::check_cuda(cudaMemcpyAsync(dst.data, src.data, src.numel() * dtype_bytes(src.dtype), cudaMemcpyDefault, stream),
                     "copy into a kvinfer buffer");
}

}  // namespace kvinfer
