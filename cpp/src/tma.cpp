#include "tma.h"

#include <cuda_runtime_api.h>

#include <mutex>

namespace kvinfer::detail {

namespace {

using EncodeTiled = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                 const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                                 CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

// The driver's cuTensorMapEncodeTiled through the runtime (no link against libcuda).
EncodeTiled encode_fn() {
  static EncodeTiled fn = nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult q;
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q) == cudaSuccess &&
        q == cudaDriverEntryPointSuccess)
      fn = reinterpret_cast<EncodeTiled>(p);
    else
      cudaGetLastError();
  });
  return fn;
}

bool encode(CUtensorMap* map, const void* base, int rank, const cuuint64_t* dims, const int64_t* elem_strides,
            const cuuint32_t* box) {
  EncodeTiled fn = encode_fn();
  if (!fn || reinterpret_cast<uintptr_t>(base) % 16 || dims[0] % 64) return false;
  cuuint64_t strides[4];
  for (int i = 0; i < rank - 1; ++i) {
    const int64_t b = elem_strides[i] * 2;  // bytes (16-bit elements)
    if (b <= 0 || b % 16 || b >= (int64_t(1) << 40)) return false;
    strides[i] = cuuint64_t(b);
  }
  for (int i = 0; i < rank; ++i)
    if (dims[i] == 0 || dims[i] >= (cuuint64_t(1) << 31) || box[i] > 256) return false;
  const cuuint32_t elem[4] = {1, 1, 1, 1};
  // The element type only sizes the copy (2 bytes); fp16 data moves the same way.
  return fn(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, cuuint32_t(rank), const_cast<void*>(base), dims, strides, box, elem,
            CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
            CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

}  // namespace

bool encode_paged_tensor_map(CUtensorMap* map, const void* base, int64_t pages, int64_t page_size, int64_t heads,
                             int64_t head_dim, int64_t stride_page, int64_t stride_tok, int64_t stride_head,
                             int box_rows) {
  const cuuint64_t dims[4] = {cuuint64_t(head_dim), cuuint64_t(heads), cuuint64_t(page_size), cuuint64_t(pages)};
  const int64_t strides[3] = {stride_head, stride_tok, stride_page};
  const cuuint32_t box[4] = {64, 1, cuuint32_t(box_rows), 1};
  return encode(map, base, 4, dims, strides, box);
}

bool encode_kv_tensor_map(CUtensorMap* map, const void* base, int64_t tokens, int64_t heads, int64_t head_dim,
                          int64_t stride_tok, int64_t stride_head, int box_rows) {
  const cuuint64_t dims[3] = {cuuint64_t(head_dim), cuuint64_t(heads), cuuint64_t(tokens)};
  const int64_t strides[2] = {stride_head, stride_tok};
  const cuuint32_t box[3] = {64, 1, cuuint32_t(box_rows)};
  return encode(map, base, 3, dims, strides, box);
}

bool encode_packed_rows_tensor_map(CUtensorMap* map, const void* base, int64_t tokens, int64_t kv_heads, int64_t group,
                         int64_t head_dim, int64_t stride_tok, int64_t stride_head, int tile_rows) {
  if (group <= 0 || tile_rows % group) return false;
  const cuuint64_t dims[4] = {cuuint64_t(head_dim), cuuint64_t(group), cuuint64_t(kv_heads), cuuint64_t(tokens)};
  const int64_t strides[3] = {stride_head, group * stride_head, stride_tok};
  const cuuint32_t box[4] = {64, cuuint32_t(group), 1, cuuint32_t(tile_rows / group)};
  return encode(map, base, 4, dims, strides, box);
}

}  // namespace kvinfer::detail
