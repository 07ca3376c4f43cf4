// Timing harness of the Hopper attention kernel alone (single request, implicit work list), for
// experiments with the KVINFER_EXP_* switches in cuda/sm90/attention_kernel.cuh.
// nvcc -std=c++17 --expt-relaxed-constexpr -gencode=arch=compute_90a,code=sm_90a -O3 -I cuda -I cpp/src
//      -I cpp/include -I third_party/dlpack/include -I <cutlass include> ci/sm90_exp.cu -o exp [-DKVINFER_EXP_...]
#include <cstdio>
#include <vector>

#include "sm90/attention_launch.cuh"
#include "../cpp/src/tma.cpp"

using namespace kvinfer;
using namespace kvinfer::detail;

int main(int argc, char** argv) {
  const int L = argc > 1 ? atoi(argv[1]) : 4096, H = 32, D = 128;
  const bool causal = argc > 2 && atoi(argv[2]);
  const size_t n = size_t(L) * H * D;
  __nv_bfloat16 *q, *k, *v, *o;
  cudaMalloc(&q, n * 2), cudaMalloc(&k, n * 2), cudaMalloc(&v, n * 2), cudaMalloc(&o, n * 2);
  std::vector<__nv_bfloat16> h(n);
  for (size_t i = 0; i < n; ++i) h[i] = __float2bfloat16(float((i * 2654435761u) % 1000) / 1000.f - 0.5f);
  cudaMemcpy(q, h.data(), n * 2, cudaMemcpyHostToDevice);
  cudaMemcpy(k, h.data(), n * 2, cudaMemcpyHostToDevice);
  cudaMemcpy(v, h.data(), n * 2, cudaMemcpyHostToDevice);
  AttnParams p;
  p.num_qo_heads = H, p.num_kv_heads = H, p.group = 1, p.head_dim = D;
  p.q = q, p.q_stride_n = H * D, p.q_stride_h = D;
  p.k = k, p.v = v, p.k_stride_tok = p.v_stride_tok = H * D, p.k_stride_h = p.v_stride_h = D;
  p.o = o, p.o_stride_n = H * D, p.o_stride_h = D;
  p.single_qo_len = L, p.single_kv_len = L;
  p.implicit_qo_tiles = (L + 127) / 128, p.implicit_splits = 1, p.implicit_chunk = L;
  p.causal = causal, p.sm_scale = 0.088f;
  p.use_tma = getenv("EXP_NO_TMA") == nullptr &&
              encode_kv_tensor_map(&p.tma_k, k, L, H, D, H * D, D, sm90_kv_rows(D)) &&
              encode_kv_tensor_map(&p.tma_v, v, L, H, D, H * D, D, sm90_kv_rows(D));
  printf("tma: %d  ", int(p.use_tma));
  int sms = 0;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  p.grid_x = std::min(sms, p.implicit_qo_tiles * H);
  cudaEvent_t a, b;
  cudaEventCreate(&a), cudaEventCreate(&b);
  for (int i = 0; i < 3; ++i) launch_attention_sm90<128, DType::kBF16>(p, 0);
  cudaEventRecord(a);
  const int reps = 20;
  for (int i = 0; i < reps; ++i) launch_attention_sm90<128, DType::kBF16>(p, 0);
  cudaEventRecord(b);
  cudaEventSynchronize(b);
  float ms = 0;
  cudaEventElapsedTime(&ms, a, b);
  const double flops = 4.0 * L * L * H * D * (causal ? 0.5 : 1.0);
  printf("L=%d causal=%d: %.1f us, %.0f TFLOP/s (%s)\n", L, causal, ms * 1e3 / reps, flops / (ms / reps * 1e-3) / 1e12,
         cudaGetErrorString(cudaGetLastError()));
  return 0;
}
