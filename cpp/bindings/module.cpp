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

kvinfer::AttnBackend parse_backend(const std::string& s) {
  if (s == "fa2") return kvinfer::AttnBackend::kFA2;
  if (s == "fa3") return kvinfer::AttnBackend::kFA3;
  throw kvinfer::Error(kvinfer::ErrorKind::kValueError, "backend: expected \"fa2\" or \"fa3\", got \"" + s + "\"");
}

kvinfer::DType parse_attn_dtype(const std::string& s) {
  if (s == "float16" || s == "half") return kvinfer::DType::kF16;
  if (s == "bfloat16") return kvinfer::DType::kBF16;
  throw kvinfer::Error(kvinfer::ErrorKind::kTypeError, "q_data_type: expected float16 or bfloat16, got " + s);
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
      "copy_async",
      [](const Array& dst, const Array& src, uintptr_t stream) {
        kvinfer::copy_async(view(dst, "dst"), view(src, "src"), stream_of(stream));
      },
      nb::arg("dst"), nb::arg("src"), nb::arg("stream"));

  // ---- planning ------------------------------------------------------------------------------
  nb::class_<kvinfer::AttnPlan>(m, "Plan")
      .def_ro("batch", &kvinfer::AttnPlan::batch)
      .def_ro("total_qo", &kvinfer::AttnPlan::total_qo)
      .def_ro("tile_rows", &kvinfer::AttnPlan::tile_rows)
      .def_ro("kv_rows", &kvinfer::AttnPlan::kv_rows)
      .def_ro("lean_decode", &kvinfer::AttnPlan::lean_decode)
      .def_ro("chunk_tokens", &kvinfer::AttnPlan::chunk_tokens)
      .def_ro("grid_x", &kvinfer::AttnPlan::grid_x)
      .def_ro("head_section", &kvinfer::AttnPlan::head_section)
      .def_ro("tail_items", &kvinfer::AttnPlan::tail_items)
      .def_prop_ro("backend", [](const kvinfer::AttnPlan& p) {
        return p.options.backend == kvinfer::AttnBackend::kFA3 ? "fa3" : "fa2";
      })
      .def_ro("num_partials", &kvinfer::AttnPlan::num_partials)
      .def_ro("merge_in_kernel", &kvinfer::AttnPlan::merge_in_kernel)
      .def_ro("merge_groups", &kvinfer::AttnPlan::merge_groups)
      .def_ro("partial_capacity", &kvinfer::AttnPlan::partial_capacity)
      .def_ro("int_workspace_bytes", &kvinfer::AttnPlan::int_workspace_bytes)
      .def_ro("float_workspace_bytes", &kvinfer::AttnPlan::float_workspace_bytes)
      .def_prop_ro("num_work", &kvinfer::AttnPlan::num_work)
      .def("arrays", [](const kvinfer::AttnPlan& p) {
        // Host copies for inspection and tests: one entry per work item, and the merge rows.
        constexpr int kF = 12;
        std::vector<int32_t> f[kF];
        for (const auto& w : p.work) {
          const int32_t v[kF] = {w.request, w.qo_tile, w.kv_begin, w.kv_end,   w.partial, w.splits,
                                 w.chunk,   w.merge,   w.qo_begin, w.qo_len, w.kv_len,  w.kv_base};
          for (int i = 0; i < kF; ++i) f[i].push_back(v[i]);
        }
        nb::dict d;
        const char* names[kF] = {"work_request", "work_qo_tile", "work_kv_begin", "work_kv_end",
                                 "work_partial", "work_splits",  "work_chunk",    "work_merge",
                                 "work_qo_begin", "work_qo_len", "work_kv_len",   "work_kv_base"};
        for (int i = 0; i < kF; ++i) d[names[i]] = to_numpy(std::move(f[i]));
        d["merge_indptr"] = to_numpy(std::vector<int32_t>(p.merge_indptr));
        d["qo_indptr"] = to_numpy(std::vector<int32_t>(p.qo_indptr));
        d["kv_len"] = to_numpy(std::vector<int32_t>(p.kv_len));
        return d;
      });

  m.def(
      "plan_attention",
      [](const OptArray& qo_indptr, const Array& kv_indptr, const OptArray& kv_last_page_len,
         const OptArray& kv_indices, int num_qo_heads, int num_kv_heads, int head_dim, int page_size, bool causal,
         int tile_rows, int target_ctas, int min_chunk_tokens, bool allow_split, int out_elem_bytes,
         int64_t capacity_batch, int64_t capacity_rows, int fixed_grid, int64_t int_ws_bytes, int64_t float_ws_bytes,
         const std::string& backend, int64_t capacity_pages, int64_t fixed_chunk_tokens, int lean_target_ctas,
         const std::string& decode_tile) {
        kvinfer::PlanOptions o;
        o.decode_tile_choice = decode_tile == "auto" ? 0 : decode_tile == "wide" ? 1 : decode_tile == "lean" ? 2 : -1;
        o.lean_target_ctas = lean_target_ctas;
        o.fixed_chunk_tokens = fixed_chunk_tokens;
        o.backend = parse_backend(backend);
        o.capacity_pages = capacity_pages;
        o.num_qo_heads = num_qo_heads, o.num_kv_heads = num_kv_heads, o.head_dim = head_dim;
        o.page_size = page_size, o.causal = causal, o.tile_rows = tile_rows, o.target_ctas = target_ctas;
        o.min_chunk_tokens = min_chunk_tokens, o.allow_split = allow_split, o.out_elem_bytes = out_elem_bytes;
        o.capacity_batch = capacity_batch, o.capacity_rows = capacity_rows, o.fixed_grid = fixed_grid;
        o.int_workspace_bytes = int_ws_bytes, o.float_workspace_bytes = float_ws_bytes;
        TensorView qs, ls, is;
        const TensorView* qp = view(qo_indptr, "qo_indptr", &qs);
        const TensorView kp = view(kv_indptr, "kv_indptr");
        const TensorView* lp = view(kv_last_page_len, "kv_last_page_len", &ls);
        const TensorView* ip = view(kv_indices, "kv_indices", &is);
        return kvinfer::plan_attention(qp, kp, lp, o, ip);
      },
      nb::arg("qo_indptr").none(), nb::arg("kv_indptr"), nb::arg("kv_last_page_len").none(),
      nb::arg("kv_indices").none(), nb::arg("num_qo_heads"), nb::arg("num_kv_heads"), nb::arg("head_dim"),
      nb::arg("page_size"), nb::arg("causal"), nb::arg("tile_rows"), nb::arg("target_ctas"),
      nb::arg("min_chunk_tokens"), nb::arg("allow_split"), nb::arg("out_elem_bytes"), nb::arg("capacity_batch"),
      nb::arg("capacity_rows"), nb::arg("fixed_grid"), nb::arg("int_workspace_bytes"),
      nb::arg("float_workspace_bytes"), nb::arg("backend") = "fa2", nb::arg("capacity_pages") = 0,
      nb::arg("fixed_chunk_tokens") = 0, nb::arg("lean_target_ctas") = 0,
      nb::arg("decode_tile") = "auto");

  m.def(
      "upload_plan",
      [](const kvinfer::AttnPlan& plan, const Array& ws, uintptr_t stream) {
        kvinfer::upload_plan(plan, view(ws, "int_workspace"), stream_of(stream));
      },
      nb::arg("plan"), nb::arg("int_workspace"), nb::arg("stream"));

  m.def(
      "plan_single",
      [](int64_t qo_len, int64_t kv_len, int hq, int hkv, int head_dim, int target_ctas, int min_chunk_tokens,
         const std::string& backend, bool causal) {
        const kvinfer::SinglePlan sp = kvinfer::plan_single(qo_len, kv_len, hq, hkv, head_dim, target_ctas,
                                                            min_chunk_tokens, parse_backend(backend), causal);
        return nb::make_tuple(sp.tile_rows, sp.splits, sp.chunk_tokens, sp.tmp_rows, sp.grid_x, sp.head_section,
                              sp.kv_rows);
      },
      nb::arg("qo_len"), nb::arg("kv_len"), nb::arg("num_qo_heads"), nb::arg("num_kv_heads"), nb::arg("head_dim"),
      nb::arg("target_ctas"), nb::arg("min_chunk_tokens"), nb::arg("backend") = "fa2", nb::arg("causal") = false);

  m.def(
      "attention_sm90_available",
      [](int head_dim, const std::string& dtype, int device) {
        return kvinfer::attention_sm90_available(head_dim, parse_attn_dtype(dtype), device);
      },
      nb::arg("head_dim"), nb::arg("dtype"), nb::arg("device"));

  m.def(
      "attention_ctas_per_sm",
      [](int head_dim, const std::string& dtype, bool decode_tile, int device, bool lean) {
        return kvinfer::attention_ctas_per_sm(head_dim, parse_attn_dtype(dtype), decode_tile, device, lean);
      },
      nb::arg("head_dim"), nb::arg("dtype"), nb::arg("decode_tile"), nb::arg("device"), nb::arg("lean") = false);

  // ---- attention -----------------------------------------------------------------------------
  m.def(
      "single_attention",
      [](const Array& q, const Array& k, const Array& v, const Array& o, const OptArray& lse, const OptArray& mask,
         const std::string& kv_layout, bool causal, int window_left, float sm_scale, float soft_cap, int tile_rows,
         int splits, int64_t chunk_tokens, const OptArray& tmp_o, const OptArray& tmp_lse, uintptr_t stream,
         const std::string& backend, int grid_x, int head_section, int kv_rows) {
        kvinfer::AttentionOptions opt;
        opt.layout = parse_layout(kv_layout), opt.causal = causal, opt.window_left = window_left;
        opt.sm_scale = sm_scale, opt.logits_soft_cap = soft_cap;
        kvinfer::SinglePlan sp;
        sp.tile_rows = tile_rows, sp.splits = splits, sp.chunk_tokens = chunk_tokens;
        sp.backend = parse_backend(backend), sp.grid_x = grid_x, sp.head_section = head_section;
        sp.kv_rows = kv_rows;
        const TensorView qv = view(q, "q"), kv = view(k, "k"), vv = view(v, "v"), ov = view(o, "out");
        TensorView s1, s2, s3, s4;
        const TensorView* lp = view(lse, "lse", &s1);
        const TensorView* mp = view(mask, "packed_custom_mask", &s2);
        const TensorView* to = view(tmp_o, "tmp_o", &s3);
        const TensorView* tl = view(tmp_lse, "tmp_lse", &s4);
        kvinfer::single_attention(qv, kv, vv, ov, lp, mp, opt, sp, to, tl, stream_of(stream));
      },
      nb::arg("q"), nb::arg("k"), nb::arg("v"), nb::arg("out"), nb::arg("lse").none(), nb::arg("mask").none(),
      nb::arg("kv_layout"), nb::arg("causal"), nb::arg("window_left"), nb::arg("sm_scale"), nb::arg("soft_cap"),
      nb::arg("tile_rows"), nb::arg("splits"), nb::arg("chunk_tokens"), nb::arg("tmp_o").none(),
      nb::arg("tmp_lse").none(), nb::arg("stream"), nb::arg("backend") = "fa2", nb::arg("grid_x") = 0,
      nb::arg("head_section") = 0, nb::arg("kv_rows") = 0);

  m.def(
      "batch_attention",
      [](const kvinfer::AttnPlan& plan, const Array& q, const Array& k, const Array& v, const OptArray& kv_indices,
         const Array& o, const OptArray& lse, const OptArray& mask, const Array& int_ws, const Array& float_ws,
         const std::string& kv_layout, bool causal, int window_left, float sm_scale, float soft_cap,
         uintptr_t stream, bool enable_pdl) {
        kvinfer::AttentionOptions opt;
        opt.layout = parse_layout(kv_layout), opt.causal = causal, opt.window_left = window_left;
        opt.sm_scale = sm_scale, opt.logits_soft_cap = soft_cap, opt.enable_pdl = enable_pdl;
        const TensorView qv = view(q, "q"), kv = view(k, "k_cache"), vv = view(v, "v_cache");
        TensorView s1, s2, s3;
        const TensorView* ip = view(kv_indices, "kv_indices", &s1);
        const TensorView ov = view(o, "out");
        const TensorView* lp = view(lse, "lse", &s2);
        const TensorView* mp = view(mask, "packed_custom_mask", &s3);
        const TensorView iw = view(int_ws, "int_workspace"), fw = view(float_ws, "float_workspace_buffer");
        kvinfer::batch_attention(plan, qv, kv, vv, ip, ov, lp, mp, iw, fw, opt, stream_of(stream));
      },
      nb::arg("plan"), nb::arg("q"), nb::arg("k"), nb::arg("v"), nb::arg("kv_indices").none(), nb::arg("out"),
      nb::arg("lse").none(), nb::arg("mask").none(), nb::arg("int_workspace"), nb::arg("float_workspace"),
      nb::arg("kv_layout"), nb::arg("causal"), nb::arg("window_left"), nb::arg("sm_scale"), nb::arg("soft_cap"),
      nb::arg("stream"), nb::arg("enable_pdl") = false);
}
