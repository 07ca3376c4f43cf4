// Hopper path, paged KV: the pre-kernel that turns page ids into element offsets (the launcher runs it
// before the attention kernel).
#pragma once
#include <cstdint>

#include "launch.h"  // AttnParams

namespace kvinfer::detail::attn90 {

// Page offsets of the paged KV (Hopper path): one block per request computes the element offset of
// each of its pages in K and V once per run, so the producer's loop only adds slot offsets; ids
// outside [0, num_pages) become -1 (never read) and flag the request (its rows come out NaN).
// (A template so each instance's copy stays its own symbol.)
template <int D, int KV>
__global__ void page_offsets_kernel(const __grid_constant__ AttnParams p) {
  const int b = blockIdx.x;
  if (b >= *p.num_requests) return;
  const int begin = p.req_kv_begin[b], len = p.req_kv_len[b];
  const int pages = (len + p.page_size - 1) / p.page_size;
  bool bad = false;
  for (int i = threadIdx.x; i < pages; i += blockDim.x) {
    const int id = p.kv_indices[begin + i];
    const bool ok = unsigned(id) < unsigned(p.num_pages);
    bad |= !ok;
    p.page_off_k[begin + i] = ok ? int64_t(id) * p.k_stride_page : -1;
    if (p.page_off_v != p.page_off_k) p.page_off_v[begin + i] = ok ? int64_t(id) * p.v_stride_page : -1;
  }
  bad = __syncthreads_or(bad);
  if (threadIdx.x == 0) p.req_bad[b] = bad;
}

}  // namespace kvinfer::detail::attn90
