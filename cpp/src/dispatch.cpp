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

}  // namespace kvinfer::detail
