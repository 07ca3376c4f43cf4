// Fixed-size register vectors with aligned (up to 16-byte) loads and stores.
#pragma once
#include "common/types.cuh"

namespace kvinfer::cuda {

template <typename T, int N>
struct alignas(sizeof(T) * N) Vec {
  T v[N];

  // p must be aligned to sizeof(Vec) (the caller checks before choosing N > 1).
  __device__ __forceinline__ void load(const T* p) { *this = *reinterpret_cast<const Vec*>(p); }
  __device__ __forceinline__ void store(T* p) const { *reinterpret_cast<Vec*>(p) = *this; }
};

}  // namespace kvinfer::cuda
