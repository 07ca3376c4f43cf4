// Attention-state merge entry points: validation, parameter packing, dispatch.
#include "kvinfer/merge.h"

#include <string>

#include "check.h"
#include "device.h"
#include "dispatch.h"

namespace kvinfer {
namespace {

using detail::MergeParams;

constexpr int kMaxHeadDim = 4096;  // one row is handled by one block row; far above any model's

void expect_value_dtype(const TensorView& v) { detail::expect_dtype(v, {DType::kF16, DType::kBF16, DType::kF32}); }
void expect_lse_dtype(const TensorView& s) { detail::expect_dtype(s, {DType::kF32}); }

// Vector accesses need 16-byte aligned rows with unit stride along d.
bool vec_ok(const TensorView& v, int vec) {
  if (reinterpret_cast<uintptr_t>(v.data) % 16 != 0) return false;
  if (v.size(-1) % vec != 0 || v.stride(-1) != 1) return false;
  for (int i = 0; i + 1 < v.ndim; ++i)
    if (v.shape[i] > 1 && v.strides[i] % vec != 0) return false;
  return true;
}

int pick_vec(DType dt, std::initializer_list<const TensorView*> vs) {
  const int vec = 16 / dtype_bytes(dt);
  for (const TensorView* v : vs)
    if (!vec_ok(*v, vec)) return 1;
  return vec;
}

void check_head_dim(const TensorView& v) {
  if (v.size(-1) < 1 || v.size(-1) > kMaxHeadDim)
    detail::fail(ErrorKind::kValueError, std::string(v.name) + ": head dim must be in [1, " +
                                             std::to_string(kMaxHeadDim) + "], got shape " + detail::shape_str(v));
}

// Output checks shared by merge_state and merge_states: v_out [seq, H, D] of the value dtype, s_out [seq, H].
void check_outputs(const TensorView& v_out, const TensorView* s_out, const TensorView& v_in, int64_t seq,
                   int64_t heads, int64_t d) {
  detail::expect_dtype(v_out, {v_in.dtype});
  detail::expect_non_overlapping(v_out);
  detail::expect_ndim(v_out, 3, "[seq, num_heads, head_dim]");
  detail::expect_size(v_out, 0, seq, "seq");
  detail::expect_size(v_out, 1, heads, "num_heads");
  detail::expect_size(v_out, 2, d, "head_dim");
  if (s_out) {
    expect_lse_dtype(*s_out);
    detail::expect_ndim(*s_out, 2, "[seq, num_heads]");
    detail::expect_non_overlapping(*s_out);
    detail::expect_size(*s_out, 0, seq, "seq");
    detail::expect_size(*s_out, 1, heads, "num_heads");
  }
}

void set_out(MergeParams& p, const TensorView& v_out, const TensorView* s_out) {
  p.v_out = v_out.data;
  for (int i = 0; i < 3; ++i) p.v_out_stride[i] = v_out.strides[i];
  if (s_out) {
    p.s_out = static_cast<float*>(s_out->data);
    p.s_out_stride[0] = s_out->strides[0];
    p.s_out_stride[1] = s_out->strides[1];
  }
}

// Source `i` of a pair merge: v [seq, H, D] and s [seq, H] (no state axis).
void set_pair_source(MergeParams& p, int i, const TensorView& v, const TensorView& s) {
  p.v_in[i] = v.data;
  p.s_in[i] = static_cast<const float*>(s.data);
  p.v_in_stride[i][0] = v.strides[0];
  p.v_in_stride[i][2] = v.strides[1];
  p.v_in_stride[i][3] = v.strides[2];
  p.s_in_stride[i][0] = s.strides[0];
  p.s_in_stride[i][2] = s.strides[1];
}

// The pair (a, b) of merge_state / merge_state_in_place: same dtype and shape.
void check_pair(const TensorView& v_a, const TensorView& s_a, const TensorView& v_b, const TensorView& s_b) {
  expect_value_dtype(v_a);
  detail::expect_ndim(v_a, 3, "[seq, num_heads, head_dim]");
  check_head_dim(v_a);
  expect_lse_dtype(s_a);
  detail::expect_ndim(s_a, 2, "[seq, num_heads]");
  detail::expect_size(s_a, 0, v_a.size(0), "seq");
  detail::expect_size(s_a, 1, v_a.size(1), "num_heads");
  detail::expect_dtype(v_b, {v_a.dtype});
  detail::expect_ndim(v_b, 3, "[seq, num_heads, head_dim]");
  for (int i = 0; i < 3; ++i) detail::expect_size(v_b, i, v_a.size(i), i == 0 ? "seq" : i == 1 ? "num_heads" : "head_dim");
  expect_lse_dtype(s_b);
  detail::expect_ndim(s_b, 2, "[seq, num_heads]");
  detail::expect_size(s_b, 0, v_a.size(0), "seq");
  detail::expect_size(s_b, 1, v_a.size(1), "num_heads");
}

void run(DType dt, const MergeParams& p, int device, cudaStream_t stream) {
  if (p.seq * p.heads == 0) return;  // nothing to merge; no launch for empty grids
  detail::DeviceGuard guard(device);
  detail::dispatch_merge(dt, p, stream);
}

}  // namespace

void merge_state(const TensorView& v_a, const TensorView& s_a, const TensorView& v_b, const TensorView& s_b,
                 const TensorView& v_out, const TensorView* s_out, cudaStream_t stream) {
  check_pair(v_a, s_a, v_b, s_b);
  check_outputs(v_out, s_out, v_a, v_a.size(0), v_a.size(1), v_a.size(2));
  detail::expect_cuda_same_device({&v_a, &s_a, &v_b, &s_b, &v_out, s_out});
  MergeParams p;
  p.seq = v_a.size(0), p.heads = v_a.size(1), p.head_dim = v_a.size(2), p.num_states = 2, p.pair = true;
  p.vec = pick_vec(v_a.dtype, {&v_a, &v_b, &v_out});
  set_pair_source(p, 0, v_a, s_a);
  set_pair_source(p, 1, v_b, s_b);
  set_out(p, v_out, s_out);
  run(v_a.dtype, p, v_a.device_id, stream);
}

void merge_state_in_place(const TensorView& v, const TensorView& s, const TensorView& v_other,
                          const TensorView& s_other, const TensorView* mask, cudaStream_t stream) {
  check_pair(v, s, v_other, s_other);
  detail::expect_non_overlapping(v);
  detail::expect_non_overlapping(s);
  if (mask) {
    detail::expect_dtype(*mask, {DType::kBool, DType::kU8});
    detail::expect_ndim(*mask, 1, "[seq]");
    detail::expect_size(*mask, 0, v.size(0), "seq");
  }
  detail::expect_cuda_same_device({&v, &s, &v_other, &s_other, mask});
  MergeParams p;
  p.seq = v.size(0), p.heads = v.size(1), p.head_dim = v.size(2), p.num_states = 2, p.pair = true;
  p.vec = pick_vec(v.dtype, {&v, &v_other});
  set_pair_source(p, 0, v, s);
  set_pair_source(p, 1, v_other, s_other);
  set_out(p, v, &s);
  if (mask) {
    p.mask = static_cast<const uint8_t*>(mask->data);
    p.mask_stride = mask->strides[0];
  }
  run(v.dtype, p, v.device_id, stream);
}

void merge_states(const TensorView& v, const TensorView& s, const TensorView& v_out, const TensorView* s_out,
                  cudaStream_t stream) {
  expect_value_dtype(v);
  detail::expect_ndim(v, 4, "[seq, num_states, num_heads, head_dim]");
  check_head_dim(v);
  expect_lse_dtype(s);
  detail::expect_ndim(s, 3, "[seq, num_states, num_heads]");
  for (int i = 0; i < 3; ++i)
    detail::expect_size(s, i, v.size(i), i == 0 ? "seq" : i == 1 ? "num_states" : "num_heads");
  check_outputs(v_out, s_out, v, v.size(0), v.size(2), v.size(3));
  detail::expect_cuda_same_device({&v, &s, &v_out, s_out});
  MergeParams p;
  p.seq = v.size(0), p.num_states = v.size(1), p.heads = v.size(2), p.head_dim = v.size(3), p.pair = false;
  p.vec = pick_vec(v.dtype, {&v, &v_out});
  p.v_in[0] = v.data;
  p.s_in[0] = static_cast<const float*>(s.data);
  for (int i = 0; i < 4; ++i) p.v_in_stride[0][i] = v.strides[i];
  for (int i = 0; i < 3; ++i) p.s_in_stride[0][i] = s.strides[i];
  set_out(p, v_out, s_out);
  run(v.dtype, p, v.device_id, stream);
}

void merge_states_ragged(const TensorView& v, const TensorView& s, const TensorView& state_indptr,
                         const TensorView& v_out, const TensorView* s_out, cudaStream_t stream) {
  expect_value_dtype(v);
  detail::expect_ndim(v, 3, "[num_partials, num_heads, head_dim]");
  check_head_dim(v);
  expect_lse_dtype(s);
  detail::expect_ndim(s, 2, "[num_partials, num_heads]");
  detail::expect_size(s, 0, v.size(0), "num_partials");
  detail::expect_size(s, 1, v.size(1), "num_heads");
  detail::expect_ndim(v_out, 3, "[seq, num_heads, head_dim]");
  detail::expect_index_array(state_indptr, v_out.size(0) + 1, "seq + 1 (rows of out plus one)");
  check_outputs(v_out, s_out, v, v_out.size(0), v.size(1), v.size(2));
  detail::expect_cuda_same_device({&v, &s, &state_indptr, &v_out, s_out});
  MergeParams p;
  p.seq = v_out.size(0), p.heads = v.size(1), p.head_dim = v.size(2), p.pair = false;
  p.vec = pick_vec(v.dtype, {&v, &v_out});
  p.v_in[0] = v.data;
  p.s_in[0] = static_cast<const float*>(s.data);
  // Partial q + i sits i rows after partial q: the state axis is the row axis.
  p.v_in_stride[0][0] = p.v_in_stride[0][1] = v.strides[0];
  p.v_in_stride[0][2] = v.strides[1], p.v_in_stride[0][3] = v.strides[2];
  p.s_in_stride[0][0] = p.s_in_stride[0][1] = s.strides[0];
  p.s_in_stride[0][2] = s.strides[1];
  p.state_indptr = static_cast<const int32_t*>(state_indptr.data);
  p.num_partials = v.size(0);
  set_out(p, v_out, s_out);
  run(v.dtype, p, v.device_id, stream);
}

}  // namespace kvinfer
