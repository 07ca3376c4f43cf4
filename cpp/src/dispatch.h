// Dispatch: maps validated parameters to the compiled instance (generated table, cuda/manifest.py).
#pragma once
#include "launch.h"

namespace kvinfer::detail {

// Throws Error(kNotCompiled) naming the configuration when this build lacks it.
void dispatch_merge(DType v_dtype, const MergeParams& p, cudaStream_t stream);
void dispatch_append_kv(DType cache_dtype, const AppendKVParams& p, cudaStream_t stream);
void dispatch_attention(int head_dim, DType dtype, AttnTile tile, const AttnParams& p, cudaStream_t stream);
// Resident CTAs per SM of the instance on the current device; 0 when it is not compiled.
int dispatch_attention_ctas_per_sm(int head_dim, DType dtype, AttnTile tile);
// Hopper (sm_90a) attention instances: whether (head_dim, dtype) is compiled, and its launch.
bool has_attention_sm90(int head_dim, DType dtype);
void dispatch_attention_sm90(int head_dim, DType dtype, const AttnParams& p, cudaStream_t stream);

}  // namespace kvinfer::detail
