// Argument validation shared by all entry points. Each check throws kvinfer::Error naming the
// argument (TensorView::name) and what was expected.
#pragma once
#include <initializer_list>
#include <string>

#include "kvinfer/tensor.h"

namespace kvinfer::detail {

[[noreturn]] void fail(ErrorKind kind, const std::string& msg);
std::string shape_str(const TensorView& t);

void expect_dtype(const TensorView& t, std::initializer_list<DType> allowed);
void expect_ndim(const TensorView& t, int ndim, const char* layout);
// t.size(dim) == value; `what` names the expected extent, e.g. "num_heads of v_a".
void expect_size(const TensorView& t, int dim, int64_t value, const char* what);
// Index arrays: int32, 1-D, contiguous; length checked when `length` >= 0 (`what` names it).
void expect_index_array(const TensorView& t, int64_t length = -1, const char* what = "");
// The last axis (head_dim) has stride 1, as the vectorised loads and the kernels' tiles need.
void expect_unit_last_stride(const TensorView& t);
// Outputs: no two elements may share memory (zero or overlapping strides would race).
void expect_non_overlapping(const TensorView& t);
// Same CUDA device for all; throws for host arrays. Call after the structural checks.
void expect_cuda_same_device(std::initializer_list<const TensorView*> ts);

}  // namespace kvinfer::detail
