// Paged KV-cache utilities.
//
// A paged cache holds K and V as views k_cache/v_cache of shape [num_pages, page_size, H, D] (NHD) or
// [num_pages, H, page_size, D] (HND), with arbitrary page/token/head strides (e.g. k = cache[:, layer, 0]
// of a bigger [num_pages, num_layers, 2, page_size, H, D] tensor) and unit stride along D.
// Request b owns pages kv_indices[kv_indptr[b] : kv_indptr[b+1]]; its token at position p lives in
// page kv_indices[kv_indptr[b] + p / page_size], slot p % page_size. Index arrays are int32.
#pragma once
#include <cuda_runtime_api.h>

#include "kvinfer/tensor.h"

namespace kvinfer {

enum class KVLayout { kNHD, kHND };

// Writes append_k/append_v[nnz, H, D] (the cache's dtype) into the pages: token i goes to request
// batch_indices[i] at position positions[i]. Index arrays are device-resident int32: entries that
// point outside the page table (a position past the request's pages, a batch index >= batch size, a
// page id outside [0, num_pages)) are skipped by the kernel rather than written out of bounds.
// kv_last_page_len ([batch] int32, optional) is only checked for shape: positions decide the slots.
KVINFER_API void append_paged_kv_cache(const TensorView& append_k, const TensorView& append_v,
                                       const TensorView& batch_indices, const TensorView& positions,
                                       const TensorView& k_cache, const TensorView& v_cache, KVLayout layout,
                                       const TensorView& kv_indices, const TensorView& kv_indptr,
                                       const TensorView* kv_last_page_len, cudaStream_t stream);

}  // namespace kvinfer
