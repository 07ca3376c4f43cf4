// DType -> CUDA element type, and scalar conversions to/from float.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kvinfer/tensor.h"

namespace kvinfer::cuda {

template <DType kD> struct CudaType;
template <> struct CudaType<DType::kF16> { using type = half; };
template <> struct CudaType<DType::kBF16> { using type = __nv_bfloat16; };
template <> struct CudaType<DType::kF32> { using type = float; };
template <DType kD> using cuda_t = typename CudaType<kD>::type;

__device__ __forceinline__ float to_float(half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_float(float x) { return x; }

template <typename T> __device__ __forceinline__ T from_float(float x);
template <> __device__ __forceinline__ half from_float<half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <> __device__ __forceinline__ float from_float<float>(float x) { return x; }

}  // namespace kvinfer::cuda
