// A CTA job of the attention kernels (sm80 and sm90): one work item of the plan (batch) or of the
// implicit single-request list, with its request's metadata resolved.
#pragma once
#include "launch.h"

namespace kvinfer::detail::attn {

struct Job {
  int request, qo_tile, kv_begin, kv_end, partial, splits;
  int qo_begin, qo_len, kv_len, kv_base;  // kv_base: first page (paged) or token (ragged)
  int64_t mask_offset;
};

__device__ __forceinline__ void load_job(const AttnParams& p, int w, Job& j) {
  if (p.work) {
    const AttnWorkItem it = p.work[w];
    j.request = it.request, j.qo_tile = it.qo_tile, j.kv_begin = it.kv_begin, j.kv_end = it.kv_end;
    j.partial = it.partial, j.splits = it.splits;
    j.qo_begin = p.req_qo_indptr[j.request];
    j.qo_len = p.req_qo_indptr[j.request + 1] - j.qo_begin;
    j.kv_len = p.req_kv_len[j.request];
    j.kv_base = p.req_kv_begin[j.request];
    j.mask_offset = p.req_mask_offset ? p.req_mask_offset[j.request] : 0;
  } else {
    const int chunk = w / p.implicit_qo_tiles;
    j.request = 0, j.qo_tile = w - chunk * p.implicit_qo_tiles;
    // Causal: the last query tiles see the most keys; start them first so they do not form the tail.
    if (p.causal) j.qo_tile = p.implicit_qo_tiles - 1 - j.qo_tile;
    j.qo_begin = 0, j.qo_len = p.single_qo_len, j.kv_len = p.single_kv_len, j.kv_base = 0, j.mask_offset = 0;
    j.kv_begin = chunk * p.implicit_chunk;
    j.kv_end = min(j.kv_len, j.kv_begin + p.implicit_chunk);
    j.splits = p.implicit_splits;
    j.partial = p.implicit_splits > 1 ? chunk : -1;
  }
}

}  // namespace kvinfer::detail::attn
