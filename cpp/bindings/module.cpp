// kvinfer._C: thin DLPack marshaling between Python and the C++ core. Arrays arrive as DLPack
// capsules or __dlpack__ objects (the Python layer exports them on the launch stream), are viewed
// without copies, and every check lives in the core. kvinfer::Error maps to Python exceptions by kind.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include <optional>
#include <vector>

#include "kvinfer/kvinfer.h"

namespace nb = nanobind;
using kvinfer::TensorView;

namespace {

using Array = nb::ndarray<nb::ro>;  // any dtype, device, shape and strides; never converted
using OptArray = std::optional<Array>;

TensorView view(const Array& a, const char* name) {
  DLTensor t{};
  t.data = const_cast<void*>(a.data_handle());
  t.byte_offset = a.byte_offset();
  t.ndim = static_cast<int32_t>(a.ndim());
  t.shape = const_cast<int64_t*>(a.shape_ptr());
  t.strides = const_cast<int64_t*>(a.stride_ptr());
  t.dtype = DLDataType{a.dtype().code, a.dtype().bits, a.dtype().lanes};
  t.device = DLDevice{static_cast<DLDeviceType>(a.device_type()), a.device_id()};
  return kvinfer::view_of(t, name);
}

// Optional arguments: a view that lives in `slot`, or nullptr.
const TensorView* view(const OptArray& a, const char* name, TensorView* slot) {
  if (!a) return nullptr;
  *slot = view(*a, name);
  return slot;
}

cudaStream_t stream_of(uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

// A host int32 vector handed to numpy without a copy; the capsule frees it with the array.
nb::ndarray<nb::numpy, int32_t, nb::ndim<1>> to_numpy(std::vector<int32_t>&& v) {
  auto* owned = new std::vector<int32_t>(std::move(v));
  nb::capsule owner(owned, [](void* p) noexcept { delete static_cast<std::vector<int32_t>*>(p); });
  return nb::ndarray<nb::numpy, int32_t, nb::ndim<1>>(owned->data(), {owned->size()}, owner);
}

kvinfer::KVLayout parse_layout(const std::string& s) {
  if (s == "NHD") return kvinfer::KVLayout::kNHD;
  if (s == "HND") return kvinfer::KVLayout::kHND;
  throw kvinfer::Error(kvinfer::ErrorKind::kValueError, "kv_layout: expected \"NHD\" or \"HND\", got \"" + s + "\"");
}

}  // namespace

NB_MODULE(_C, m) {
  m.doc() = "kvinfer native core (use the kvinfer package, not this module)";

  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const kvinfer::Error& e) {
      switch (e.kind()) {
        case kvinfer::ErrorKind::kTypeError: PyErr_SetString(PyExc_TypeError, e.what()); break;
        case kvinfer::ErrorKind::kValueError: PyErr_SetString(PyExc_ValueError, e.what()); break;
        case kvinfer::ErrorKind::kNotCompiled: PyErr_SetString(PyExc_NotImplementedError, e.what()); break;
        case kvinfer::ErrorKind::kCudaError: PyErr_SetString(PyExc_RuntimeError, e.what()); break;
      }
    }
  });

  m.def("version", &kvinfer::version);
  m.def("build_info_json", &kvinfer::build_info_json);
  m.def("num_instances", &kvinfer::num_instances);
  m.def("device_count", &kvinfer::device_count);
  m.def("device_description", &kvinfer::device_description, nb::arg("device"));
  m.def("device_sm_count", &kvinfer::device_sm_count, nb::arg("device"));
  m.def("stream_synchronize", [](uintptr_t s) { kvinfer::stream_synchronize(stream_of(s)); }, nb::arg("stream"));

  // Views are built one statement at a time, inputs first, so the first bad argument is the one named.
  m.def(
      "merge_state",
      [](const Array& v_a, const Array& s_a, const Array& v_b, const Array& s_b, const Array& v_out,
         const OptArray& s_out, uintptr_t stream) {
        const TensorView va = view(v_a, "v_a"), sa = view(s_a, "s_a"), vb = view(v_b, "v_b"), sb = view(s_b, "s_b");
        const TensorView vo = view(v_out, "out");
        TensorView so_slot;
        const TensorView* so = view(s_out, "lse_out", &so_slot);
        kvinfer::merge_state(va, sa, vb, sb, vo, so, stream_of(stream));
      },
      nb::arg("v_a"), nb::arg("s_a"), nb::arg("v_b"), nb::arg("s_b"), nb::arg("v_out"), nb::arg("s_out").none(),
      nb::arg("stream"));

  m.def(
      "merge_state_in_place",
      [](const Array& v, const Array& s, const Array& v_other, const Array& s_other, const OptArray& mask,
         uintptr_t stream) {
        const TensorView vv = view(v, "v"), sv = view(s, "s"), vo = view(v_other, "v_other"),
                         so = view(s_other, "s_other");
        TensorView mask_slot;
        const TensorView* mv = view(mask, "mask", &mask_slot);
        kvinfer::merge_state_in_place(vv, sv, vo, so, mv, stream_of(stream));
      },
      nb::arg("v"), nb::arg("s"), nb::arg("v_other"), nb::arg("s_other"), nb::arg("mask").none(), nb::arg("stream"));

  m.def(
      "merge_states",
      [](const Array& v, const Array& s, const Array& v_out, const OptArray& s_out, uintptr_t stream) {
        const TensorView vv = view(v, "v"), sv = view(s, "s"), vo = view(v_out, "out");
        TensorView so_slot;
        const TensorView* so = view(s_out, "lse_out", &so_slot);
        kvinfer::merge_states(vv, sv, vo, so, stream_of(stream));
      },
      nb::arg("v"), nb::arg("s"), nb::arg("v_out"), nb::arg("s_out").none(), nb::arg("stream"));

  m.def(
      "merge_states_ragged",
      [](const Array& v, const Array& s, const Array& indptr, const Array& v_out, const OptArray& s_out,
         uintptr_t stream) {
        const TensorView vv = view(v, "v"), sv = view(s, "s"), ip = view(indptr, "indptr"), vo = view(v_out, "out");
        TensorView so_slot;
        const TensorView* so = view(s_out, "lse_out", &so_slot);
        kvinfer::merge_states_ragged(vv, sv, ip, vo, so, stream_of(stream));
      },
      nb::arg("v"), nb::arg("s"), nb::arg("indptr"), nb::arg("v_out"), nb::arg("s_out").none(), nb::arg("stream"));

  m.def(
      "append_paged_kv_cache",
      [](const Array& append_k, const Array& append_v, const Array& batch_indices, const Array& positions,
         const Array& k_cache, const Array& v_cache, const std::string& kv_layout, const Array& kv_indices,
         const Array& kv_indptr, const OptArray& kv_last_page_len, uintptr_t stream) {
        const kvinfer::KVLayout layout = parse_layout(kv_layout);
        const TensorView ak = view(append_k, "append_key"), av = view(append_v, "append_value");
        const TensorView bi = view(batch_indices, "batch_indices"), pos = view(positions, "positions");
        const TensorView kc = view(k_cache, "k_cache"), vc = view(v_cache, "v_cache");
        const TensorView ki = view(kv_indices, "kv_indices"), kp = view(kv_indptr, "kv_indptr");
        TensorView lpl_slot;
        const TensorView* lpl = view(kv_last_page_len, "kv_last_page_len", &lpl_slot);
        kvinfer::append_paged_kv_cache(ak, av, bi, pos, kc, vc, layout, ki, kp, lpl, stream_of(stream));
      },
      nb::arg("append_k"), nb::arg("append_v"), nb::arg("batch_indices"), nb::arg("positions"), nb::arg("k_cache"),
      nb::arg("v_cache"), nb::arg("kv_layout"), nb::arg("kv_indices"), nb::arg("kv_indptr"),
      nb::arg("kv_last_page_len").none(), nb::arg("stream"));

  m.def(
      "plan_decode",
      [](const Array& kv_indptr, const Array& kv_last_page_len, int num_qo_heads, int num_kv_heads, int head_dim,
         int page_size, int target_ctas, int min_chunk_tokens) {
        kvinfer::DecodePlanOptions opt;
        opt.num_qo_heads = num_qo_heads, opt.num_kv_heads = num_kv_heads, opt.head_dim = head_dim;
        opt.page_size = page_size, opt.target_ctas = target_ctas, opt.min_chunk_tokens = min_chunk_tokens;
        const TensorView ip = view(kv_indptr, "kv_indptr"), lp = view(kv_last_page_len, "kv_last_page_len");
        kvinfer::DecodePlan p = kvinfer::plan_decode(ip, lp, opt);
        nb::dict d;
        d["chunk_tokens"] = p.chunk_tokens;
        d["num_partials"] = p.num_partials;
        d["int_workspace_bytes"] = p.int_workspace_bytes;
        d["float_workspace_bytes"] = p.float_workspace_bytes;
        d["work_request"] = to_numpy(std::move(p.work_request));
        d["work_kv_begin"] = to_numpy(std::move(p.work_kv_begin));
        d["work_kv_end"] = to_numpy(std::move(p.work_kv_end));
        d["work_partial"] = to_numpy(std::move(p.work_partial));
        d["merge_indptr"] = to_numpy(std::move(p.merge_indptr));
        return d;
      },
      nb::arg("kv_indptr"), nb::arg("kv_last_page_len"), nb::arg("num_qo_heads"), nb::arg("num_kv_heads"),
      nb::arg("head_dim"), nb::arg("page_size"), nb::arg("target_ctas"), nb::arg("min_chunk_tokens"));
}
