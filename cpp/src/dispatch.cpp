#include "dispatch.h"

#include <string>

#include "device.h"

namespace kvinfer::detail {

void dispatch_merge(DType v_dtype, const MergeParams& p, cudaStream_t stream) {
  cudaError_t err;
  switch (v_dtype) {
#define KVINFER_MERGE_INSTANCE(dt) \
  case dt:                          \
    err = launch_merge<dt>(p, stream); \
    break;
#include "dispatch_merge.inc"
#undef KVINFER_MERGE_INSTANCE
    default:
      throw Error(ErrorKind::kNotCompiled, std::string("merge kernels for value dtype ") + dtype_name(v_dtype) +
                                               " are not in this build (see cuda/manifest.py)");
  }
  check_cuda(err, "merge kernel launch");
}

void dispatch_append_kv(DType cache_dtype, const AppendKVParams& p, cudaStream_t stream) {
  cudaError_t err;
  switch (dtype_bytes(cache_dtype)) {
#define KVINFER_APPEND_KV_INSTANCE(bytes) \
  case bytes:                              \
    err = launch_append_kv<bytes>(p, stream); \
    break;
#include "dispatch_append_kv.inc"
#undef KVINFER_APPEND_KV_INSTANCE
    default:
      throw Error(ErrorKind::kNotCompiled, std::string("append_paged_kv_cache for cache dtype ") +
                                               dtype_name(cache_dtype) + " is not in this build (see cuda/manifest.py)");
  }
  check_cuda(err, "append_paged_kv_cache kernel launch");
}

void dispatch_attention(int head_dim, DType dtype, AttnTile tile, const AttnParams& p, cudaStream_t stream) {
  cudaError_t err = cudaErrorNotYetImplemented;
  bool found = false;
#define KVINFER_ATTENTION_INSTANCE(d, dt, t)          \
  if (!found && head_dim == d && dtype == dt && tile == t) { \
    found = true;                                     \
    err = launch_attention<d, dt, t>(p, stream);      \
  }
#include "dispatch_attention.inc"
#undef KVINFER_ATTENTION_INSTANCE
  if (!found)
    throw Error(ErrorKind::kNotCompiled, std::string("attention kernels for head_dim ") + std::to_string(head_dim) +
                                             " and dtype " + dtype_name(dtype) +
                                             " are not in this build; rebuild with KVINFER_HEAD_DIMS / KVINFER_DTYPES "
                                             "including them (see README, cuda/manifest.py)");
  check_cuda(err, "attention kernel launch");
}

int dispatch_attention_ctas_per_sm(int head_dim, DType dtype, AttnTile tile) {
  int n = 0;
#define KVINFER_ATTENTION_INSTANCE(d, dt, t) \
  if (head_dim == d && dtype == dt && tile == t) n = attention_ctas_per_sm<d, dt, t>();
#include "dispatch_attention.inc"
#undef KVINFER_ATTENTION_INSTANCE
  return n;
}

bool has_attention_sm90(int head_dim, DType dtype) {
  bool found = false;
#define KVINFER_ATTENTION_SM90_INSTANCE(d, dt, kv) found = found || (head_dim == d && dtype == dt);
#include "dispatch_attention_sm90.inc"
#undef KVINFER_ATTENTION_SM90_INSTANCE
  return found;
}

void dispatch_attention_sm90(int head_dim, DType dtype, const AttnParams& p, cudaStream_t stream) {
  cudaError_t err = cudaErrorNotYetImplemented;
  bool found = false;
#define KVINFER_ATTENTION_SM90_INSTANCE(d, dt, kv)                 \
  if (!found && head_dim == d && dtype == dt && p.kv_rows == kv) { \
    found = true;                                                  \
    err = launch_attention_sm90<d, kv, dt>(p, stream);             \
  }
#include "dispatch_attention_sm90.inc"
#undef KVINFER_ATTENTION_SM90_INSTANCE
  if (!found)
    throw Error(ErrorKind::kNotCompiled, std::string("Hopper (sm_90a) attention kernels for head_dim ") +
                                             std::to_string(head_dim) + ", dtype " + dtype_name(dtype) + " and " +
                                             std::to_string(p.kv_rows) +
                                             "-token KV tiles are not in this build (KVINFER_CUDA_ARCHS must include 90a)");
  check_cuda(err, "attention (sm90) kernel launch");
}

}  // namespace kvinfer::detail
