// CUDA runtime helpers for the host core.
#pragma once
#include <cuda_runtime_api.h>

namespace kvinfer::detail {

// Throws Error(kCudaError) naming `what` if `e` is not cudaSuccess.
void check_cuda(cudaError_t e, const char* what);

// Compute capability of `device` as major * 10 + minor (cached per device; 0 if it cannot be read).
int device_cc(int device);

// Makes `device` current for the lifetime of the guard, so kernels run where their arrays live.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = -1;
};

}  // namespace kvinfer::detail
