// Attention-state merge: combine partial attention outputs computed over disjoint KV ranges
// (KV sequence parallelism, split-KV, cascade/shared prefix).
//
// A state is (v, s): v[seq, H, D] the softmax-normalised output over its KV range, s[seq, H] the
// base-2 log-sum-exp of its logits (fp32). Merged: s = log2(sum_i 2^s_i),
// v = sum_i 2^(s_i - s) v_i. A state with s = -inf (nothing attended) contributes nothing, even
// if its v holds garbage; if every state is -inf the result is v = 0, s = -inf.
// v: fp16, bf16 or fp32, any head dim, any strides; all arrays on one CUDA device. Kernels run on
// `stream`. Errors: kvinfer::Error (errors.h).
#pragma once
#include <cuda_runtime_api.h>

#include "kvinfer/tensor.h"

namespace kvinfer {

// v_out[seq, H, D] (dtype of v_a), s_out[seq, H] fp32 or nullptr.
KVINFER_API void merge_state(const TensorView& v_a, const TensorView& s_a, const TensorView& v_b,
                             const TensorView& s_b, const TensorView& v_out, const TensorView* s_out,
                             cudaStream_t stream);

// (v, s) <- merge((v, s), (v_other, s_other)) for rows where mask[seq] (bool/uint8) is set, or all
// rows when mask is nullptr.
KVINFER_API void merge_state_in_place(const TensorView& v, const TensorView& s, const TensorView& v_other,
                                      const TensorView& s_other, const TensorView* mask, cudaStream_t stream);

// v[seq, num_states, H, D], s[seq, num_states, H] -> v_out[seq, H, D], s_out[seq, H] or nullptr.
KVINFER_API void merge_states(const TensorView& v, const TensorView& s, const TensorView& v_out,
                              const TensorView* s_out, cudaStream_t stream);

// Ragged form (split-KV): v[num_partials, H, D], s[num_partials, H]; row q of the output merges
// partials state_indptr[q] .. state_indptr[q+1]-1 (int32 [seq + 1], device-resident; an empty range
// gives 0 / -inf). Rows whose range is not inside [0, num_partials] are written as NaN.
KVINFER_API void merge_states_ragged(const TensorView& v, const TensorView& s, const TensorView& state_indptr,
                                     const TensorView& v_out, const TensorView* s_out, cudaStream_t stream);

}  // namespace kvinfer
