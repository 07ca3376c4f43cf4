// TensorView: kvinfer's thin, non-owning view of an array, built from a DLPack DLTensor.
// Strides are in elements; a view never owns or frees memory.
#pragma once
#include <cstdint>

#include <dlpack/dlpack.h>

#include "kvinfer/errors.h"

namespace kvinfer {

enum class DType : uint8_t { kF16, kBF16, kF32, kF64, kI8, kU8, kI32, kI64, kBool, kE4M3, kE5M2 };

KVINFER_API const char* dtype_name(DType t);
KVINFER_API int dtype_bytes(DType t);

struct TensorView {
  static constexpr int kMaxDims = 8;
  void* data = nullptr;        // already offset by DLTensor::byte_offset
  DType dtype = DType::kF32;
  int ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};
  DLDeviceType device_type = kDLCPU;
  int device_id = 0;
  const char* name = "tensor";  // argument name used in error messages

  int64_t size(int i) const { return shape[i < 0 ? i + ndim : i]; }
  int64_t stride(int i) const { return strides[i < 0 ? i + ndim : i]; }
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= shape[i];
    return n;
  }
  bool is_cuda() const { return device_type == kDLCUDA || device_type == kDLCUDAManaged; }
};

// Builds a view of `t`; `name` (a string literal or otherwise long-lived) is used in errors.
// Throws Error(kTypeError) for dtypes kvinfer has no name for, Error(kValueError) for ndim > kMaxDims.
KVINFER_API TensorView view_of(const DLTensor& t, const char* name);

}  // namespace kvinfer
