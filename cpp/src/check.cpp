#include "check.h"

#include <algorithm>
#include <cstdlib>

namespace kvinfer::detail {

void fail(ErrorKind kind, const std::string& msg) { throw Error(kind, msg); }

std::string shape_str(const TensorView& t) {
  std::string s = "[";
  for (int i = 0; i < t.ndim; ++i) s += (i ? ", " : "") + std::to_string(t.shape[i]);
  return s + "]";
}

static std::string strides_str(const TensorView& t) {
  std::string s = "[";
  for (int i = 0; i < t.ndim; ++i) s += (i ? ", " : "") + std::to_string(t.strides[i]);
  return s + "]";
}

void expect_dtype(const TensorView& t, std::initializer_list<DType> allowed) {
  std::string names;
  size_t i = 0;
  for (DType d : allowed) {
    if (d == t.dtype) return;
    names += (i == 0 ? "" : (i + 1 == allowed.size() ? " or " : ", ")) + std::string(dtype_name(d));
    ++i;
  }
  fail(ErrorKind::kTypeError, std::string(t.name) + ": expected dtype " + names + ", got " + dtype_name(t.dtype));
}

void expect_ndim(const TensorView& t, int ndim, const char* layout) {
  if (t.ndim != ndim)
    fail(ErrorKind::kValueError, std::string(t.name) + ": expected " + std::to_string(ndim) + " dimensions " +
                                     layout + ", got shape " + shape_str(t));
}

void expect_size(const TensorView& t, int dim, int64_t value, const char* what) {
  if (t.size(dim) != value)
    fail(ErrorKind::kValueError, std::string(t.name) + ": dimension " + std::to_string(dim) + " must equal " + what +
                                     " (" + std::to_string(value) + "), got shape " + shape_str(t));
}

void expect_index_array(const TensorView& t, int64_t length, const char* what) {
  expect_dtype(t, {DType::kI32});
  expect_ndim(t, 1, "(an index array)");
  if (length >= 0) expect_size(t, 0, length, what);
  if (t.shape[0] > 1 && t.strides[0] != 1)
    fail(ErrorKind::kValueError, std::string(t.name) + ": index arrays must be contiguous, got stride " +
                                     std::to_string(t.strides[0]));
}

void expect_unit_last_stride(const TensorView& t) {
  if (t.ndim > 0 && t.size(-1) > 1 && t.stride(-1) != 1)
    fail(ErrorKind::kValueError, std::string(t.name) + ": the last (head_dim) axis must have stride 1, got strides " +
                                     strides_str(t) + " for shape " + shape_str(t));
}

void expect_non_overlapping(const TensorView& t) {
  // Visit dims by increasing |stride|; each must step past everything the smaller ones span.
  int order[TensorView::kMaxDims];
  int n = 0;
  for (int i = 0; i < t.ndim; ++i)
    if (t.shape[i] > 1) order[n++] = i;
  std::sort(order, order + n, [&](int a, int b) { return std::llabs(t.strides[a]) < std::llabs(t.strides[b]); });
  int64_t span = 1;  // elements covered by the dims visited so far
  for (int k = 0; k < n; ++k) {
    const int i = order[k];
    if (std::llabs(t.strides[i]) < span)
      fail(ErrorKind::kValueError, std::string(t.name) + ": output elements overlap in memory (strides " +
                                       strides_str(t) + " for shape " + shape_str(t) + "); pass a non-overlapping array");
    span = std::llabs(t.strides[i]) * (t.shape[i] - 1) + span;
  }
}

static const char* device_str(DLDeviceType d) {
  switch (d) {
    case kDLCPU: return "cpu";
    case kDLCUDA: return "cuda";
    case kDLCUDAHost: return "cuda_host (pinned host memory)";
    case kDLCUDAManaged: return "cuda_managed";
    default: return "a non-CUDA device";
  }
}

void expect_cuda_same_device(std::initializer_list<const TensorView*> ts) {
  const TensorView* first = nullptr;
  for (const TensorView* t : ts) {
    if (!t) continue;
    if (!t->is_cuda())
      fail(ErrorKind::kValueError, std::string(t->name) + ": expected an array on a CUDA device, got one on " +
                                       device_str(t->device_type));
    if (!first) {
      first = t;
    } else if (t->device_id != first->device_id) {
      fail(ErrorKind::kValueError, std::string(t->name) + ": expected CUDA device " + std::to_string(first->device_id) +
                                       " (the device of " + first->name + "), got device " +
                                       std::to_string(t->device_id));
    }
  }
}

}  // namespace kvinfer::detail
