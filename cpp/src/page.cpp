// Paged KV-cache utilities: validation, parameter packing, dispatch.
#include "kvinfer/page.h"

#include <string>

#include "check.h"
#include "device.h"
#include "dispatch.h"

namespace kvinfer {

namespace {

// Cache axes (page, slot, head, d) of a [num_pages, ...] view in `layout`.
void cache_axes(KVLayout layout, int axes[4]) {
  axes[0] = 0, axes[3] = 3;
  axes[1] = layout == KVLayout::kNHD ? 1 : 2;
  axes[2] = layout == KVLayout::kNHD ? 2 : 1;
}

bool aligned16(const TensorView& t) { return reinterpret_cast<uintptr_t>(t.data) % 16 == 0; }

}  // namespace

void append_paged_kv_cache(const TensorView& append_k, const TensorView& append_v, const TensorView& batch_indices,
                           const TensorView& positions, const TensorView& k_cache, const TensorView& v_cache,
                           KVLayout layout, const TensorView& kv_indices, const TensorView& kv_indptr,
                           const TensorView* kv_last_page_len, cudaStream_t stream) {
  const char* layout_str = layout == KVLayout::kNHD ? "[num_pages, page_size, num_kv_heads, head_dim] (NHD)"
                                                    : "[num_pages, num_kv_heads, page_size, head_dim] (HND)";
  detail::expect_dtype(k_cache, {DType::kF16, DType::kBF16, DType::kE4M3, DType::kE5M2});
  detail::expect_ndim(k_cache, 4, layout_str);
  detail::expect_dtype(v_cache, {k_cache.dtype});
  detail::expect_ndim(v_cache, 4, layout_str);
  for (int i = 0; i < 4; ++i) detail::expect_size(v_cache, i, k_cache.size(i), "the same extent as k_cache");
  int ax[4];
  cache_axes(layout, ax);
  const int64_t num_pages = k_cache.size(ax[0]), page_size = k_cache.size(ax[1]);
  const int64_t heads = k_cache.size(ax[2]), head_dim = k_cache.size(ax[3]);
  for (const TensorView* a : {&append_k, &append_v}) {
    detail::expect_dtype(*a, {k_cache.dtype});
    detail::expect_ndim(*a, 3, "[nnz, num_kv_heads, head_dim]");
    detail::expect_size(*a, 0, append_k.size(0), "nnz (tokens in append_k)");
    detail::expect_size(*a, 1, heads, "num_kv_heads of the cache");
    detail::expect_size(*a, 2, head_dim, "head_dim of the cache");
  }
  const int64_t nnz = append_k.size(0);
  detail::expect_index_array(batch_indices, nnz, "nnz (tokens in append_k)");
  detail::expect_index_array(positions, nnz, "nnz (tokens in append_k)");
  detail::expect_index_array(kv_indptr);
  if (kv_indptr.size(0) < 1)
    detail::fail(ErrorKind::kValueError, "kv_indptr: expected batch_size + 1 >= 1 entries, got 0");
  detail::expect_index_array(kv_indices);
  if (kv_last_page_len) detail::expect_index_array(*kv_last_page_len, kv_indptr.size(0) - 1, "batch_size (len(kv_indptr) - 1)");
  for (const TensorView* t : {&k_cache, &v_cache, &append_k, &append_v}) detail::expect_unit_last_stride(*t);
  detail::expect_non_overlapping(k_cache);
  detail::expect_non_overlapping(v_cache);
  detail::expect_cuda_same_device(
      {&append_k, &append_v, &batch_indices, &positions, &k_cache, &v_cache, &kv_indices, &kv_indptr,
       kv_last_page_len});
  if (nnz == 0 || heads == 0 || head_dim == 0) return;
  if (page_size < 1) detail::fail(ErrorKind::kValueError, std::string(k_cache.name) + ": page_size must be >= 1");

  detail::AppendKVParams p;
  p.nnz = nnz, p.heads = heads, p.head_dim = head_dim;
  p.batch = kv_indptr.size(0) - 1, p.num_pages = num_pages, p.page_size = page_size;
  const TensorView* src[2] = {&append_k, &append_v};
  const TensorView* dst[2] = {&k_cache, &v_cache};
  const int vec = 16 / dtype_bytes(k_cache.dtype);
  bool vec_ok = head_dim % vec == 0;
  for (int kv = 0; kv < 2; ++kv) {
    p.src[kv] = src[kv]->data;
    p.cache[kv] = dst[kv]->data;
    for (int i = 0; i < 3; ++i) p.src_stride[kv][i] = src[kv]->strides[i];
    for (int i = 0; i < 4; ++i) p.cache_stride[kv][i] = dst[kv]->strides[ax[i]];
    vec_ok = vec_ok && aligned16(*src[kv]) && aligned16(*dst[kv]);
    for (int i = 0; i < 2; ++i) vec_ok = vec_ok && p.src_stride[kv][i] % vec == 0;
    for (int i = 0; i < 3; ++i) vec_ok = vec_ok && p.cache_stride[kv][i] % vec == 0;
  }
  p.vec = vec_ok ? vec : 1;
  p.batch_indices = static_cast<const int32_t*>(batch_indices.data);
  p.positions = static_cast<const int32_t*>(positions.data);
  p.kv_indices = static_cast<const int32_t*>(kv_indices.data);
  p.kv_indptr = static_cast<const int32_t*>(kv_indptr.data);
  detail::DeviceGuard guard(k_cache.device_id);
  detail::dispatch_append_kv(k_cache.dtype, p, stream);
}

}  // namespace kvinfer
