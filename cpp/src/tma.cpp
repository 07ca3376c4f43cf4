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

}  // namespace

bool encode_kv_tensor_map(CUtensorMap* map, const void* base, int64_t tokens, int64_t heads, int64_t head_dim,
                          int64_t stride_tok, int64_t stride_head, int box_rows) {
  EncodeTiled fn = encode_fn();
  if (!fn || tokens <= 0 || heads <= 0 || head_dim % 64 || reinterpret_cast<uintptr_t>(base) % 16) return false;
  const int64_t st = stride_tok * 2, sh = stride_head * 2;  // bytes
  if (st <= 0 || sh <= 0 || st % 16 || sh % 16 || st >= (int64_t(1) << 40) || sh >= (int64_t(1) << 40)) return false;
  if (tokens >= (int64_t(1) << 31) || heads >= (int64_t(1) << 31)) return false;
  const cuuint64_t dims[3] = {cuuint64_t(head_dim), cuuint64_t(heads), cuuint64_t(tokens)};
  const cuuint64_t strides[2] = {cuuint64_t(sh), cuuint64_t(st)};
  const cuuint32_t box[3] = {64, 1, cuuint32_t(box_rows)};
  const cuuint32_t elem[3] = {1, 1, 1};
  return fn(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, const_cast<void*>(base), dims, strides, box, elem,
            CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
            CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

}  // namespace kvinfer::detail
