// Fixed-size register vectors with aligned (up to 16-byte) loads and stores.
#pragma once
#include <cstdint>
#include "common/types.cuh"

namespace kvinfer::cuda {

template <typename T, int N>
struct alignas(sizeof(T) * N) Vec {
  T v[N];

  // p is global memory, aligned to sizeof(Vec) (the caller checks before choosing N > 1). 16-byte vectors
  // are stored with one explicit v4 store: the compiler splits a plain struct copy (or a uint4
  // store) of a vector built element by element into 4-byte stores.
  __device__ __forceinline__ void load(const T* p) { *this = *reinterpret_cast<const Vec*>(p); }
  __device__ __forceinline__ void store(T* p) const {
    if constexpr (sizeof(Vec) == 16) {
      uint32_t w[4];
      __builtin_memcpy(w, v, 16);
      asm volatile("st.global.v4.b32 [%0], {%1, %2, %3, %4};" ::"l"(p), "r"(w[0]), "r"(w[1]), "r"(w[2]), "r"(w[3]) : "memory");
    } else {
      *reinterpret_cast<Vec*>(p) = *this;
    }
  }
};

}  // namespace kvinfer::cuda
