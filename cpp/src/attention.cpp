// Attention entry points: validation, parameter packing, dispatch to the FA2-class instances, and
// the merge of split-KV partials.
#include "kvinfer/attention.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "check.h"
#include "device.h"
#include "dispatch.h"
#include "job_schedule.h"
#include "tma.h"

namespace kvinfer {

namespace {

using detail::fail;

[[noreturn]] void bad(const std::string& msg) { fail(ErrorKind::kValueError, msg); }

// The kernels copy 16-byte chunks: data 16-byte aligned, every stride but the last a multiple of
// 8 elements, unit stride along head_dim.
void expect_tiled(const TensorView& t) {
  detail::expect_unit_last_stride(t);
  if (reinterpret_cast<uintptr_t>(t.data) % 16)
    bad(std::string(t.name) + ": data must be 16-byte aligned for the attention kernels");
  for (int i = 0; i + 1 < t.ndim; ++i)
    if (t.strides[i] % 8 && t.shape[i] > 1)
      bad(std::string(t.name) + ": strides must be multiples of 8 elements (16 bytes) for the attention kernels, got " +
          "stride " + std::to_string(t.strides[i]) + " on axis " + std::to_string(i));
}

void check_head_dim(const TensorView& q) {
  const int64_t d = q.size(-1);
  if (d != 64 && d != 128 && d != 256)
    bad(std::string(q.name) + ": head_dim " + std::to_string(d) + " is not supported (64, 128 or 256)");
}

// q/o [tokens, H_qo, D]; lse [tokens, H_qo].
void check_q_o(const TensorView& q, const TensorView& o, const TensorView* lse) {
  detail::expect_dtype(q, {DType::kF16, DType::kBF16});
  detail::expect_ndim(q, 3, "[qo_tokens, num_qo_heads, head_dim]");
  check_head_dim(q);
  expect_tiled(q);
  detail::expect_dtype(o, {q.dtype});
  detail::expect_ndim(o, 3, "[qo_tokens, num_qo_heads, head_dim]");
  for (int i = 0; i < 3; ++i) detail::expect_size(o, i, q.size(i), "the extent of q");
  expect_tiled(o);
  detail::expect_non_overlapping(o);
  if (lse) {
    detail::expect_dtype(*lse, {DType::kF32});
    detail::expect_ndim(*lse, 2, "[qo_tokens, num_qo_heads]");
    detail::expect_size(*lse, 0, q.size(0), "qo_tokens of q");
    detail::expect_size(*lse, 1, q.size(1), "num_qo_heads of q");
    detail::expect_non_overlapping(*lse);
  }
}

// K/V of `layout` with `lead` leading axes before (tokens, heads) / (heads, tokens): token and head
// axes and extents.
struct KVAxes {
  int tok, head;
};
KVAxes kv_axes(KVLayout layout, int lead) {
  return layout == KVLayout::kNHD ? KVAxes{lead, lead + 1} : KVAxes{lead + 1, lead};
}

void check_kv_pair(const TensorView& k, const TensorView& v, const TensorView& q, int ndim, const char* layout_str) {
  detail::expect_dtype(k, {q.dtype});
  detail::expect_dtype(v, {q.dtype});
  detail::expect_ndim(k, ndim, layout_str);
  detail::expect_ndim(v, ndim, layout_str);
  for (int i = 0; i < ndim; ++i) detail::expect_size(v, i, k.size(i), "the same extent as k");
  detail::expect_size(k, ndim - 1, q.size(2), "head_dim of q");
  expect_tiled(k);
  expect_tiled(v);
}

void check_heads(int64_t hq, int64_t hkv, const char* kv_name) {
  if (hkv < 1 || hq % hkv)
    bad(std::string("num_qo_heads (") + std::to_string(hq) + ") must be a multiple of num_kv_heads (" +
        std::to_string(hkv) + ", from " + kv_name + ")");
}

void fill_common(detail::AttnParams& p, const TensorView& q, const TensorView& o, const TensorView* lse,
                 const TensorView* mask_bits, const AttentionOptions& opt, int64_t hkv) {
  p.num_qo_heads = int(q.size(1)), p.num_kv_heads = int(hkv);
  detail::set_group(p, int(q.size(1) / hkv));
  p.head_dim = int(q.size(2));
  p.q = q.data, p.q_stride_n = q.strides[0], p.q_stride_h = q.strides[1];
  p.o = o.data, p.o_stride_n = o.strides[0], p.o_stride_h = o.strides[1];
  if (lse) p.lse = static_cast<float*>(lse->data), p.lse_stride_n = lse->strides[0], p.lse_stride_h = lse->strides[1];
  p.mask_bits = mask_bits ? static_cast<const uint8_t*>(mask_bits->data) : nullptr;
  p.causal = opt.causal;
  p.window_left = opt.window_left < 0 ? -1 : opt.window_left;
  p.sm_scale = opt.sm_scale > 0.f ? opt.sm_scale : 1.f / std::sqrt(float(q.size(2)));
  p.soft_cap = opt.logits_soft_cap > 0.f ? opt.logits_soft_cap : 0.f;
  if (!std::isfinite(p.sm_scale)) bad("sm_scale: must be finite");
}

void check_mask(const TensorView* mask_bits, int64_t bits) {
  if (!mask_bits) return;
  detail::expect_dtype(*mask_bits, {DType::kU8});
  detail::expect_ndim(*mask_bits, 1, "[packed bytes] (little-endian bits of the row-major bool mask)");
  if (mask_bits->stride(0) != 1 && mask_bits->size(0) > 1) bad(std::string(mask_bits->name) + ": must be contiguous");
  const int64_t need = (bits + 7) / 8;
  if (mask_bits->size(0) < need)
    bad(std::string(mask_bits->name) + ": has " + std::to_string(mask_bits->size(0)) + " bytes, the mask needs " +
        std::to_string(need) + " (" + std::to_string(bits) + " bits)");
}

void launch(const detail::AttnParams& p, DType dt, AttnBackend backend, detail::AttnTile tile, int device,
            cudaStream_t stream) {
  detail::DeviceGuard guard(device);
  if (backend == AttnBackend::kFA3) {
    if (!detail::has_attention_sm90(p.head_dim, dt) || detail::device_cc(device) != 90)
      fail(ErrorKind::kNotCompiled, "backend FA3: the sm_90a kernels for head_dim " + std::to_string(p.head_dim) +
                                        " / " + dtype_name(dt) + " are not in this build or the device is not sm90");
    detail::dispatch_attention_sm90(p.head_dim, dt, p, stream);
    return;
  }
  detail::dispatch_attention(p.head_dim, dt, tile, p, stream);
}

// TMA descriptors of contiguous/ragged K and V for the FA3 kernel (falls back to cp.async if either
// cannot be described).
void set_kv_tensor_maps(detail::AttnParams& p, const TensorView& k, const TensorView& v, int64_t tokens, int64_t hkv) {
  const int rows = p.kv_rows;
  p.use_tma = detail::encode_kv_tensor_map(&p.tma_k, k.data, tokens, hkv, p.head_dim, p.k_stride_tok, p.k_stride_h, rows) &&
              detail::encode_kv_tensor_map(&p.tma_v, v.data, tokens, hkv, p.head_dim, p.v_stride_tok, p.v_stride_h, rows);
}

// Q tiles by TMA where the group size divides the tile (any strides TMA takes); else cp.async.
// O the same way, in boxes of one consumer warpgroup's 64 rows.
void set_qo_tensor_maps(detail::AttnParams& p, const TensorView& q, const TensorView& o) {
  p.q_tma = detail::encode_packed_rows_tensor_map(&p.tma_q, q.data, q.size(0), p.num_kv_heads, p.group, p.head_dim,
                                                  p.q_stride_n, p.q_stride_h, detail::kSm90TileRows);
  p.o_tma = detail::encode_packed_rows_tensor_map(&p.tma_o, o.data, o.size(0), p.num_kv_heads, p.group, p.head_dim,
                                                  p.o_stride_n, p.o_stride_h, detail::kSm90TileRows / 2);
}

// Paged: TMA per page when pages tile the KV tile (sm90_paged_tma); other page sizes gather rows with
// cp.async.
void set_paged_tensor_maps(detail::AttnParams& p, const TensorView& k, const TensorView& v, int64_t hkv) {
  const int rows = p.kv_rows, ps = p.page_size;
  if (!detail::sm90_paged_tma(ps, rows)) return;
  const int box = std::min(ps, rows);
  p.use_tma = detail::encode_paged_tensor_map(&p.tma_k, k.data, p.num_pages, ps, hkv, p.head_dim, p.k_stride_page,
                                              p.k_stride_tok, p.k_stride_h, box) &&
              detail::encode_paged_tensor_map(&p.tma_v, v.data, p.num_pages, ps, hkv, p.head_dim, p.v_stride_page,
                                              p.v_stride_tok, p.v_stride_h, box);
}

// The FA3 kernels take no custom mask (the FA2-class kernels do).
void check_fa3_options(AttnBackend backend, const TensorView* mask_bits) {
  if (backend == AttnBackend::kFA3 && mask_bits)
    bad("packed_custom_mask: custom masks run on the FA2 backend only (plan with backend=\"fa2\" or \"auto\")");
}

// The FA2-class kernel maps its CTAs to jobs in sections of a power of two heads that divides the head
// count, or of all heads (attention_kernel); any other value would skip and repeat jobs.
void check_head_section(AttnBackend backend, int head_section, int64_t num_kv_heads) {
  if (backend == AttnBackend::kFA3 || head_section <= 0 || head_section >= num_kv_heads) return;
  if ((head_section & (head_section - 1)) != 0 || num_kv_heads % head_section != 0)
    bad("head_section: expected 0, a power of two that divides num_kv_heads (" + std::to_string(num_kv_heads) +
        ") or at least num_kv_heads, got " + std::to_string(head_section) + " (use the plan's value)");
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Merges token-major partial rows (q dtype; LSE fp32, both [rows, H, D] / [rows, H] contiguous)
// into o/lse: row t takes partials t * splits .. + splits (uniform), or state_indptr[t] ..
// state_indptr[t+1] (ragged; rows with none are left alone: they were written directly).
void merge_partials(const TensorView& q, const TensorView& o, const TensorView* lse, const void* part_o,
                    const float* part_lse, int64_t splits, const int32_t* state_indptr, int64_t num_partials,
                    int64_t states_hint, cudaStream_t stream, int64_t row_begin = 0, int64_t row_end = -1) {
  // Rows [row_begin, row_end) only (state_indptr: the FA3 tail's rows; the others have no partials).
  if (row_end < 0) row_end = o.size(0);
  detail::MergeParams m;
  m.seq = row_end - row_begin, m.heads = q.size(1), m.head_dim = q.size(2), m.pair = false;
  m.vec = 16 / dtype_bytes(q.dtype);
  m.v_in[0] = part_o;
  m.s_in[0] = part_lse;
  const int64_t hd = q.size(1) * q.size(2), per_row = state_indptr ? 1 : splits;  // rows of partials per output row
  m.v_in_stride[0][0] = per_row * hd, m.v_in_stride[0][1] = hd, m.v_in_stride[0][2] = q.size(2), m.v_in_stride[0][3] = 1;
  m.s_in_stride[0][0] = per_row * q.size(1), m.s_in_stride[0][1] = q.size(1), m.s_in_stride[0][2] = 1;
  m.num_states = splits;
  m.state_indptr = state_indptr ? state_indptr + row_begin : nullptr, m.num_partials = num_partials;
  m.skip_empty = state_indptr != nullptr;
  m.states_hint = states_hint;
  m.v_out = static_cast<char*>(o.data) + row_begin * o.strides[0] * dtype_bytes(q.dtype);
  m.v_out_stride[0] = o.strides[0], m.v_out_stride[1] = o.strides[1], m.v_out_stride[2] = 1;
  if (lse) m.s_out = static_cast<float*>(lse->data) + row_begin * lse->strides[0], m.s_out_stride[0] = lse->strides[0], m.s_out_stride[1] = lse->strides[1];
  detail::DeviceGuard guard(q.device_id);
  detail::dispatch_merge(q.dtype, m, stream);
}

}  // namespace

bool attention_sm90_available(int head_dim, DType dtype, int device) {
  return detail::has_attention_sm90(head_dim, dtype) && detail::device_cc(device) == 90;
}

int attention_ctas_per_sm(int head_dim, DType dtype, bool decode_tile, int device, bool lean) {
  detail::DeviceGuard guard(device);
  return detail::dispatch_attention_ctas_per_sm(
      head_dim, dtype,
      !decode_tile ? detail::AttnTile::kPrefill : lean ? detail::AttnTile::kDecodeLean : detail::AttnTile::kDecode);
}

SinglePlan plan_single(int64_t qo_len, int64_t kv_len, int num_qo_heads, int num_kv_heads, int head_dim,
                       int target_ctas, int min_chunk_tokens, AttnBackend backend, bool causal) {
  SinglePlan sp;
  sp.backend = backend;
  const int64_t group = num_kv_heads > 0 ? num_qo_heads / num_kv_heads : 1;
  sp.tile_rows = backend == AttnBackend::kFA3 ? detail::kSm90TileRows
                 : qo_len * group <= 16       ? 16
                                              : detail::attn_tile_rows(detail::AttnTile::kPrefill, head_dim);
  const int64_t ctas = ceil_div(qo_len * group, sp.tile_rows) * num_kv_heads;
  sp.chunk_tokens = std::max<int64_t>(kv_len, 1);
  // Split the KV when the query tiles alone leave most of the GPU idle (decode, short prefill over a
  // long context), into chunks of at least min_chunk_tokens.
  if (ctas > 0 && ctas * 2 <= target_ctas && kv_len >= 2 * min_chunk_tokens) {
    const int64_t want = std::min<int64_t>(target_ctas / ctas, kv_len / min_chunk_tokens);
    if (want > 1) {
      sp.chunk_tokens = ceil_div(kv_len, want);
      sp.splits = int(ceil_div(kv_len, sp.chunk_tokens));
    }
  }
  sp.tmp_rows = sp.splits > 1 ? qo_len * sp.splits : 0;
  sp.grid_x = int(std::max<int64_t>(1, std::min<int64_t>(ctas * sp.splits, std::max(1, target_ctas))));
  // Job order: the kernel's implicit list, w = chunk * tiles + tile (causal: last tiles first), in
  // sections of head_section kv heads. FA3: a persistent grid of grid_x CTAs taking jobs i, i + grid,
  // ...; FA2 (prefill tile): one CTA per job, handed out in block order to target_ctas resident CTAs.
  const bool fa3 = backend == AttnBackend::kFA3;
  if (fa3) {
    const int32_t qo_indptr[2] = {0, int32_t(qo_len)}, kv_len32 = int32_t(kv_len);
    sp.kv_rows = detail::sm90_pick_kv_rows(head_dim, qo_indptr, &kv_len32, 1, group, causal, /*wide_ok=*/true);
  }
  if (fa3 || (sp.tile_rows != 16 && target_ctas > 0)) {
    const int kv_rows = fa3 ? sp.kv_rows : detail::attn_tile_kv(detail::AttnTile::kPrefill, head_dim);
    const int64_t tiles = ceil_div(qo_len * group, sp.tile_rows);
    std::vector<int32_t> item_tiles(size_t(tiles * sp.splits));
    for (int64_t c = 0, w = 0; c < sp.splits; ++c)
      for (int64_t i = 0; i < tiles; ++i, ++w)
        item_tiles[w] = detail::item_kv_tiles(qo_len, kv_len, causal ? tiles - 1 - i : i, c * sp.chunk_tokens,
                                              std::min(kv_len, (c + 1) * sp.chunk_tokens), group, causal,
                                              int(sp.tile_rows), kv_rows);
    sp.head_section = fa3 ? detail::job_head_section(item_tiles, num_kv_heads, sp.grid_x, /*claimed=*/false, 20, false)
                          : detail::job_head_section(item_tiles, num_kv_heads, target_ctas, /*claimed=*/true, 10, true);
  }
  return sp;
}

void single_attention(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView& o,
                      const TensorView* lse, const TensorView* mask_bits, const AttentionOptions& opt,
                      const SinglePlan& sp, const TensorView* tmp_o, const TensorView* tmp_lse, cudaStream_t stream) {
  check_q_o(q, o, lse);
  const char* layout_str = opt.layout == KVLayout::kNHD ? "[kv_len, num_kv_heads, head_dim] (NHD)"
                                                        : "[num_kv_heads, kv_len, head_dim] (HND)";
  check_kv_pair(k, v, q, 3, layout_str);
  const KVAxes ax = kv_axes(opt.layout, 0);
  const int64_t kv_len = k.size(ax.tok), hkv = k.size(ax.head);
  check_heads(q.size(1), hkv, k.name);
  const int64_t qo_len = q.size(0);
  check_mask(mask_bits, qo_len * kv_len);
  if (qo_len > INT32_MAX || kv_len > INT32_MAX) bad("q/k: more than 2^31 tokens");
  if (sp.splits > 1) {
    if (!tmp_o || !tmp_lse) bad("single_attention: tmp_o/tmp_lse are required when the plan splits the KV");
    detail::expect_dtype(*tmp_o, {q.dtype});
    detail::expect_ndim(*tmp_o, 3, "[qo_len * splits, num_qo_heads, head_dim]");
    detail::expect_size(*tmp_o, 0, qo_len * sp.splits, "qo_len * splits");
    detail::expect_size(*tmp_o, 1, q.size(1), "num_qo_heads");
    detail::expect_size(*tmp_o, 2, q.size(2), "head_dim");
    detail::expect_dtype(*tmp_lse, {DType::kF32});
    detail::expect_ndim(*tmp_lse, 2, "[qo_len * splits, num_qo_heads]");
    detail::expect_size(*tmp_lse, 0, qo_len * sp.splits, "qo_len * splits");
    detail::expect_size(*tmp_lse, 1, q.size(1), "num_qo_heads");
    for (const TensorView* t : {tmp_o, tmp_lse})
      for (int i = 0; i < t->ndim; ++i) {
        int64_t want = 1;
        for (int j = i + 1; j < t->ndim; ++j) want *= t->shape[j];
        if (t->strides[i] != want) bad(std::string(t->name) + ": must be contiguous");
      }
  }
  const bool fa3 = sp.backend == AttnBackend::kFA3;
  if (fa3 ? sp.tile_rows != detail::kSm90TileRows
          : sp.tile_rows != 16 && sp.tile_rows != detail::attn_tile_rows(detail::AttnTile::kPrefill, int(q.size(2))))
    bad("plan: tile_rows does not match a compiled tile for this head_dim");
  const int d = int(q.size(2)), kv_rows = sp.kv_rows ? sp.kv_rows : detail::sm90_kv_rows(d, false);
  if (fa3 && kv_rows != detail::sm90_kv_rows(d, false) && kv_rows != detail::sm90_kv_rows(d, true))
    bad("plan: kv_rows " + std::to_string(kv_rows) + " is not a KV tile of the head_dim " + std::to_string(d) +
        " Hopper kernels");
  check_fa3_options(sp.backend, mask_bits);
  check_head_section(sp.backend, sp.head_section, hkv);
  detail::expect_cuda_same_device({&q, &k, &v, &o, lse, mask_bits, tmp_o, tmp_lse});
  if (qo_len == 0 || q.size(1) == 0) return;

  detail::AttnParams p;
  fill_common(p, q, o, lse, mask_bits, opt, hkv);
  p.k = k.data, p.v = v.data;
  p.k_stride_tok = k.strides[ax.tok], p.k_stride_h = k.strides[ax.head];
  p.v_stride_tok = v.strides[ax.tok], p.v_stride_h = v.strides[ax.head];
  p.page_size = 0;
  p.single_qo_len = int(qo_len), p.single_kv_len = int(kv_len);
  p.implicit_qo_tiles = int(ceil_div(qo_len * p.group, sp.tile_rows));
  p.implicit_splits = sp.splits;
  p.implicit_chunk = int(sp.splits > 1 ? sp.chunk_tokens : std::max<int64_t>(kv_len, 1));
  if (sp.splits > 1) {
    p.partial_o = tmp_o->data, p.partial_lse = static_cast<float*>(tmp_lse->data);
  }
  p.grid_x = fa3 ? sp.grid_x : p.implicit_qo_tiles * p.implicit_splits;
  p.head_section = sp.head_section;
  p.kv_rows = kv_rows;
  if (fa3) {
    set_kv_tensor_maps(p, k, v, kv_len, hkv);
    set_qo_tensor_maps(p, q, o);
  }
  launch(p, q.dtype, sp.backend, sp.tile_rows == 16 ? detail::AttnTile::kDecode : detail::AttnTile::kPrefill,
         q.device_id, stream);
  if (sp.splits > 1)  // tmp [qo_len, splits, H, D] -> o
    merge_partials(q, o, lse, tmp_o->data, static_cast<const float*>(tmp_lse->data), sp.splits, nullptr, 0, 0, stream);
}

void batch_attention(const AttnPlan& plan, const TensorView& q, const TensorView& k, const TensorView& v,
                     const TensorView* kv_indices, const TensorView& o, const TensorView* lse,
                     const TensorView* mask_bits, const TensorView& int_ws, const TensorView& float_ws,
                     const AttentionOptions& opt, cudaStream_t stream) {
  const PlanOptions& po = plan.options;
  check_q_o(q, o, lse);
  const bool paged = po.page_size > 0;
  const char* layout_str = paged ? (opt.layout == KVLayout::kNHD ? "[num_pages, page_size, num_kv_heads, head_dim] (NHD)"
                                                                 : "[num_pages, num_kv_heads, page_size, head_dim] (HND)")
                                 : (opt.layout == KVLayout::kNHD ? "[kv_tokens, num_kv_heads, head_dim] (NHD)"
                                                                 : "[num_kv_heads, kv_tokens, head_dim] (HND)");
  check_kv_pair(k, v, q, paged ? 4 : 3, layout_str);
  const KVAxes ax = kv_axes(opt.layout, paged ? 1 : 0);
  const int64_t hkv = k.size(ax.head);
  check_heads(q.size(1), hkv, k.name);
  if (q.size(1) != po.num_qo_heads || hkv != po.num_kv_heads || q.size(2) != po.head_dim)
    bad("run: q " + detail::shape_str(q) + " / kv heads " + std::to_string(hkv) + " do not match the plan (" +
        std::to_string(po.num_qo_heads) + " qo heads, " + std::to_string(po.num_kv_heads) + " kv heads, head_dim " +
        std::to_string(po.head_dim) + ")");
  if (dtype_bytes(q.dtype) != po.out_elem_bytes) bad("run: q's dtype does not match the plan's q_data_type");
  if (q.size(0) < plan.total_qo || (plan.merge_rows > plan.total_qo ? q.size(0) > plan.merge_rows : q.size(0) != plan.total_qo))
    bad("q: has " + std::to_string(q.size(0)) + " tokens, the plan has " + std::to_string(plan.total_qo) +
        " (qo_indptr[-1])");
  if (paged) {
    if (k.size(ax.tok) != po.page_size)
      bad(std::string(k.name) + ": page_size " + std::to_string(k.size(ax.tok)) + " does not match the plan's " +
          std::to_string(po.page_size));
    if (!kv_indices) bad("kv_indices: required for a paged KV cache");
    detail::expect_index_array(*kv_indices);
    if (plan.max_kv_index >= k.size(0))
      bad("kv_indices: page id " + std::to_string(plan.max_kv_index) + " is out of range for a cache of " +
          std::to_string(k.size(0)) + " pages");
  } else {
    const int64_t need = plan.batch ? int64_t(plan.kv_begin.back()) + plan.kv_len.back() : 0;
    if (k.size(ax.tok) < need)
      bad(std::string(k.name) + ": has " + std::to_string(k.size(ax.tok)) + " tokens, kv_indptr[-1] is " +
          std::to_string(need));
  }
  check_mask(mask_bits, plan.mask_bits);
  check_fa3_options(po.backend, mask_bits);
  check_head_section(po.backend, plan.head_section, hkv);
  detail::expect_dtype(int_ws, {DType::kU8, DType::kI8});
  detail::expect_ndim(int_ws, 1, "[bytes]");
  if (int_ws.size(0) < plan.int_workspace_bytes)
    bad(std::string(int_ws.name) + ": the plan needs " + std::to_string(plan.int_workspace_bytes) + " bytes");
  if (plan.num_partials > 0 || po.capacity_rows > 0) {
    detail::expect_ndim(float_ws, 1, "[bytes]");
    const int64_t bytes = float_ws.size(0) * dtype_bytes(float_ws.dtype);
    if (plan.partial_capacity == 0 || bytes < po.float_workspace_bytes)
      bad(std::string(float_ws.name) + ": smaller than the float workspace the plan was made for");
    if (reinterpret_cast<uintptr_t>(float_ws.data) % 256) bad(std::string(float_ws.name) + ": must be 256-byte aligned");
  }
  detail::expect_cuda_same_device({&q, &k, &v, kv_indices, &o, lse, mask_bits, &int_ws, &float_ws});
  const bool graph = po.capacity_rows > 0;  // graph mode: the merge is always launched (captured once)
  if (!graph && (q.size(0) == 0 || plan.num_work() == 0)) return;

  detail::AttnParams p;
  fill_common(p, q, o, lse, mask_bits, opt, hkv);
  p.k = k.data, p.v = v.data;
  p.k_stride_tok = k.strides[ax.tok], p.k_stride_h = k.strides[ax.head];
  p.v_stride_tok = v.strides[ax.tok], p.v_stride_h = v.strides[ax.head];
  if (paged) {
    p.page_size = po.page_size;
    p.k_stride_page = k.strides[0], p.v_stride_page = v.strides[0];
    p.kv_indices = static_cast<const int32_t*>(kv_indices->data);
    p.num_pages = k.size(0);
  }
  auto* ws = static_cast<unsigned char*>(int_ws.data);
  p.num_work = reinterpret_cast<const int32_t*>(ws);
  p.req_qo_indptr = reinterpret_cast<const int32_t*>(ws + plan.off_qo_indptr);
  p.req_kv_begin = reinterpret_cast<const int32_t*>(ws + plan.off_kv_begin);
  p.req_kv_len = reinterpret_cast<const int32_t*>(ws + plan.off_kv_len);
  p.req_mask_offset = mask_bits ? reinterpret_cast<const int64_t*>(ws + plan.off_mask_offset) : nullptr;
  p.work = reinterpret_cast<const detail::AttnWorkItem*>(ws + plan.off_work);
  auto* fws = static_cast<unsigned char*>(float_ws.data);
  p.partial_o = fws;
  p.partial_lse = reinterpret_cast<float*>(fws + plan.off_partial_lse);
  if (po.backend == AttnBackend::kFA3) {
    p.kv_rows = plan.kv_rows;
    set_qo_tensor_maps(p, q, o);
    p.sched = reinterpret_cast<int32_t*>(ws + 12);  // header words 3 and 4 (zero in the plan's image)
  }
  if (po.backend == AttnBackend::kFA3 && !paged) set_kv_tensor_maps(p, k, v, k.size(ax.tok), hkv);
  if (po.backend == AttnBackend::kFA3 && paged) {
    p.num_requests = reinterpret_cast<const int32_t*>(ws + 4);
    p.req_bad = reinterpret_cast<int32_t*>(ws + plan.off_req_bad);
    p.page_off_k = reinterpret_cast<int64_t*>(ws + plan.off_page_off);
    // K and V offsets share one array when their page strides agree (views of one cache).
    p.page_off_v = p.k_stride_page == p.v_stride_page ? p.page_off_k : p.page_off_k + plan.page_off_capacity;
    p.batch_capacity = int(graph ? po.capacity_batch : plan.batch);
    set_paged_tensor_maps(p, k, v, hkv);
  }
  // FA2 decode tile: the last CTA of each split group merges it (the counters sit in the int workspace).
  const bool merge_in_kernel = plan.merge_in_kernel;  // FA2 decode-tile plans only (the planner's rule)
  if (merge_in_kernel) p.merge_counters = reinterpret_cast<int32_t*>(ws + plan.off_merge_ctr);
  p.grid_x = plan.grid_x;
  p.head_section = plan.head_section;  // FA2-class kernel (the Hopper kernel reads the plan's header)
  p.pdl = opt.enable_pdl;  // the FA2-class launcher decides whether it can (pdl_capable)
  const detail::AttnTile tile = plan.tile_rows != 16 ? detail::AttnTile::kPrefill
                                : plan.lean_decode   ? detail::AttnTile::kDecodeLean
                                                     : detail::AttnTile::kDecode;
  launch(p, q.dtype, po.backend, tile, q.device_id, stream);
  // Merge the split rows (graph mode: always launched, so the captured graph covers any plan): every
  // row, or with an FA3 tail split only the tail's rows (the others have no partials).
  if (!merge_in_kernel && (plan.num_partials > 0 || graph)) {
    const int64_t r0 = plan.tail_items ? plan.tail_row_begin : 0, r1 = plan.tail_items ? plan.tail_row_end : o.size(0);
    merge_partials(q, o, lse, p.partial_o, p.partial_lse, 0,
                   reinterpret_cast<const int32_t*>(ws + plan.off_merge_indptr), plan.partial_capacity,
                   r1 > r0 ? std::max<int64_t>(1, plan.num_partials / (r1 - r0)) : 1, stream, r0, r1);
  }
}

}  // namespace kvinfer
