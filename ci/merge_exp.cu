// merge_state (pair form) bandwidth per build switch: ci/merge_exp.sh compiles this once per
// KVINFER_PAIR_MIN_BLOCKS value and runs it. Prints GB/s (read + write bytes) per dtype.
#include <cstdio>
#include <algorithm>
#include <vector>

#include "merge/merge_launch.cuh"

using namespace kvinfer;
using namespace kvinfer::detail;

// Pseudo-random values in [-1, 1) (hash of the index): zeros would not exercise the data path.
template <typename T>
__global__ void fill(T* x, int64_t n, uint32_t seed) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    uint32_t h = uint32_t(i) * 2654435761u ^ seed * 97531u;
    h ^= h >> 15, h *= 2246822519u, h ^= h >> 13;
    x[i] = kvinfer::cuda::from_float<T>(float(h & 0xffff) / 32768.f - 1.f);
  }
}

template <DType kV, typename T>
void bench(const char* name, int64_t seq, int64_t heads, int64_t dim) {
  const int64_t n = seq * heads * dim;
  void *va, *vb, *vo;
  float *sa, *sb, *so;
  cudaMalloc(&va, n * sizeof(T)), cudaMalloc(&vb, n * sizeof(T)), cudaMalloc(&vo, n * sizeof(T));
  cudaMalloc(&sa, seq * heads * 4), cudaMalloc(&sb, seq * heads * 4), cudaMalloc(&so, seq * heads * 4);
  fill<<<1024, 256>>>(static_cast<T*>(va), n, 1u), fill<<<1024, 256>>>(static_cast<T*>(vb), n, 2u);
  fill<<<1024, 256>>>(sa, seq * heads, 3u), fill<<<1024, 256>>>(sb, seq * heads, 4u);
  MergeParams p;
  p.seq = seq, p.heads = heads, p.head_dim = dim, p.num_states = 2, p.pair = true, p.vec = 16 / sizeof(T);
  p.v_out = vo, p.s_out = so;
  p.v_out_stride[0] = heads * dim, p.v_out_stride[1] = dim, p.v_out_stride[2] = 1;
  p.s_out_stride[0] = heads, p.s_out_stride[1] = 1;
  p.v_in[0] = va, p.v_in[1] = vb, p.s_in[0] = sa, p.s_in[1] = sb;
  for (int i = 0; i < 2; ++i) {
    p.v_in_stride[i][0] = heads * dim, p.v_in_stride[i][1] = 0, p.v_in_stride[i][2] = dim, p.v_in_stride[i][3] = 1;
    p.s_in_stride[i][0] = heads, p.s_in_stride[i][1] = 0, p.s_in_stride[i][2] = 1;
  }
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0), cudaEventCreate(&e1);
  std::vector<float> ms;
  for (int r = 0; r < 30; ++r) {
    cudaEventRecord(e0);
    for (int k = 0; k < 10; ++k) launch_merge<kV>(p, 0);
    cudaEventRecord(e1);
    cudaEventSynchronize(e1);
    float t;
    cudaEventElapsedTime(&t, e0, e1);
    ms.push_back(t / 10);
  }
  std::sort(ms.begin(), ms.end());
  const double bytes = 3.0 * n * sizeof(T) + 3.0 * seq * heads * 4;
  printf("%s (%ld, %ld, %ld): %.1f us, %.0f GB/s  err=%s\n", name, long(seq), long(heads), long(dim), ms[15] * 1e3,
         bytes / ms[15] / 1e6, cudaGetErrorString(cudaGetLastError()));
  cudaFree(va), cudaFree(vb), cudaFree(vo), cudaFree(sa), cudaFree(sb), cudaFree(so);
}

int main() {
  bench<DType::kF16, __half>("fp16", 8192, 32, 128);
  bench<DType::kBF16, __nv_bfloat16>("bf16", 8192, 32, 128);
  bench<DType::kF16, __half>("fp16", 16384, 32, 128);
  bench<DType::kBF16, __nv_bfloat16>("bf16", 16384, 32, 128);
  bench<DType::kF32, float>("fp32", 8192, 32, 128);
  return 0;
}
