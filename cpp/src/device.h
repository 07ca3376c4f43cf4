// CUDA runtime helpers for the host core.
#pragma once
#include <cuda_runtime_api.h>

namespace kvinfer::detail {

// Throws Error(kCudaError) naming `what` if `e` is not cudaSuccess.
void check_cuda(cudaError_t e, const char* what);

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
