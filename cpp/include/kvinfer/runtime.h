// Build information, devices and streams.
#pragma once
#include <string>

#include <cuda_runtime_api.h>

#include "kvinfer/errors.h"

namespace kvinfer {

KVINFER_API const char* version();
// JSON object: version, cuda_archs, head_dims, dtypes, instances (what this build compiled).
KVINFER_API const char* build_info_json();
KVINFER_API int num_instances();
// Number of visible CUDA devices; 0 when there is no driver or no device (never throws).
KVINFER_API int device_count();
// "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs)"; throws Error(kValueError) for a bad index.
KVINFER_API std::string device_description(int device);
// Multiprocessors of `device` (the planner sizes grids by it); throws Error(kValueError) for a bad index.
KVINFER_API int device_sm_count(int device);
// Waits for `stream`; throws Error(kCudaError) if it failed.
KVINFER_API void stream_synchronize(cudaStream_t stream);

struct TensorView;
// Async copy of a contiguous array into a contiguous device array of the same dtype (the first
// src.numel() elements of dst), from host or device memory, on `stream`.
KVINFER_API void copy_async(const TensorView& dst, const TensorView& src, cudaStream_t stream);

}  // namespace kvinfer
