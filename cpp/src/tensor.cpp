#include "kvinfer/tensor.h"

#include <string>

namespace kvinfer {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::kF16: return "float16";
    case DType::kBF16: return "bfloat16";
    case DType::kF32: return "float32";
    case DType::kF64: return "float64";
    case DType::kI8: return "int8";
    case DType::kU8: return "uint8";
    case DType::kI32: return "int32";
    case DType::kI64: return "int64";
    case DType::kBool: return "bool";
    case DType::kE4M3: return "float8_e4m3fn";
    case DType::kE5M2: return "float8_e5m2";
  }
  return "?";
}

int dtype_bytes(DType t) {
  switch (t) {
    case DType::kF16: case DType::kBF16: return 2;
    case DType::kF32: case DType::kI32: return 4;
    case DType::kF64: case DType::kI64: return 8;
    default: return 1;
  }
}

static bool to_dtype(DLDataType d, DType* out) {
  if (d.lanes != 1) return false;
  switch (d.code) {
    case kDLFloat:
      if (d.bits == 16) { *out = DType::kF16; return true; }
      if (d.bits == 32) { *out = DType::kF32; return true; }
      if (d.bits == 64) { *out = DType::kF64; return true; }
      return false;
    case kDLBfloat:
      if (d.bits == 16) { *out = DType::kBF16; return true; }
      return false;
    case kDLInt:
      if (d.bits == 8) { *out = DType::kI8; return true; }
      if (d.bits == 32) { *out = DType::kI32; return true; }
      if (d.bits == 64) { *out = DType::kI64; return true; }
      return false;
    case kDLUInt:
      if (d.bits == 8) { *out = DType::kU8; return true; }
      return false;
    case kDLBool:
      if (d.bits == 8) { *out = DType::kBool; return true; }
      return false;
    case kDLFloat8_e4m3fn: *out = DType::kE4M3; return true;
    case kDLFloat8_e5m2: *out = DType::kE5M2; return true;
    default: return false;
  }
}

TensorView view_of(const DLTensor& t, const char* name) {
  TensorView v;
  v.name = name;
  if (!to_dtype(t.dtype, &v.dtype))
    throw Error(ErrorKind::kTypeError, std::string(name) + ": unsupported dtype (DLPack code " +
                                           std::to_string(t.dtype.code) + ", " + std::to_string(t.dtype.bits) +
                                           " bits, " + std::to_string(t.dtype.lanes) + " lanes)");
  if (t.ndim < 0 || t.ndim > TensorView::kMaxDims)
    throw Error(ErrorKind::kValueError, std::string(name) + ": at most " + std::to_string(TensorView::kMaxDims) +
                                            " dimensions are supported, got " + std::to_string(t.ndim));
  v.data = static_cast<char*>(t.data) + t.byte_offset;
  v.ndim = t.ndim;
  v.device_type = t.device.device_type;
  v.device_id = t.device.device_id;
  int64_t contiguous = 1;  // DLPack allows strides == NULL for compact row-major arrays
  for (int i = t.ndim - 1; i >= 0; --i) {
    v.shape[i] = t.shape[i];
    v.strides[i] = t.strides ? t.strides[i] : contiguous;
    contiguous *= t.shape[i];
  }
  return v;
}

}  // namespace kvinfer
