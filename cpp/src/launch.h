// Parameters and launcher declarations shared by the host core and the kernel instances.
// Plain C++: host code includes this, never the kernel headers under cuda/.
#pragma once
#include <cstdint>

#include <cuda_runtime_api.h>

#include "kvinfer/tensor.h"

namespace kvinfer::detail {

// Merge of num_states attention states per (seq, head) row.
// kPair form (merge_state, merge_state_in_place): state i comes from source i, num_states == 2.
// Multi form (merge_states): every state comes from source 0, state i at i * v_stride[0][1];
// ragged when state_indptr is set (below).
struct MergeParams {
  int64_t seq = 0, heads = 0, head_dim = 0, num_states = 0;
  bool pair = false;
  int vec = 1;                      // elements per vector access: 16 bytes' worth, or 1 when unaligned
  void* v_out = nullptr;            // may alias v_in[0] (in-place)
  float* s_out = nullptr;           // optional
  int64_t v_out_stride[3] = {};     // seq, head, d
  int64_t s_out_stride[2] = {};     // seq, head
  const void* v_in[2] = {};
  const float* s_in[2] = {};
  int64_t v_in_stride[2][4] = {};   // seq, state, head, d
  int64_t s_in_stride[2][3] = {};   // seq, state, head
  const uint8_t* mask = nullptr;    // optional, [seq]: rows with mask 0 are left untouched
  int64_t mask_stride = 0;
  // Ragged multi form: row q merges states state_indptr[q] .. state_indptr[q+1]-1 of source 0
  // (a [num_partials, H, D] array; v_in_stride[0][1] == v_in_stride[0][0]). Rows whose range falls
  // outside [0, num_partials] are written as NaN: device-resident indices cannot be checked on the host.
  const int32_t* state_indptr = nullptr;
  int64_t num_partials = 0;
};

template <DType kV>
cudaError_t launch_merge(const MergeParams& p, cudaStream_t stream);

// Append of nnz tokens' K/V rows into a paged cache (cpp/include/kvinfer/page.h).
struct AppendKVParams {
  int64_t nnz = 0, heads = 0, head_dim = 0;
  int64_t batch = 0, num_pages = 0, page_size = 0;
  int vec = 1;                          // elements per vector access (16 bytes' worth) or 1
  const void* src[2] = {};              // append_k, append_v
  int64_t src_stride[2][3] = {};        // token, head, d
  void* cache[2] = {};                  // k_cache, v_cache
  int64_t cache_stride[2][4] = {};      // page, slot, head, d (layout already resolved)
  const int32_t* batch_indices = nullptr;
  const int32_t* positions = nullptr;
  const int32_t* kv_indices = nullptr;  // [kv_indptr[batch]]
  const int32_t* kv_indptr = nullptr;   // [batch + 1]
};

// Instantiated per element size (bytes): the append only moves bits.
template <int kElemBytes>
cudaError_t launch_append_kv(const AppendKVParams& p, cudaStream_t stream);

}  // namespace kvinfer::detail
