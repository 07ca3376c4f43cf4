// TMA tensor maps (Hopper bulk tensor copies) for the sm90 attention path, encoded on the host.
#pragma once
#include <cstdint>

#include <cuda.h>

namespace kvinfer::detail {

// A [tokens, heads, D] view of 16-bit elements with element strides (tok, head, 1), loaded in boxes of
// box_rows tokens x 1 head x 64 columns with 128-byte swizzle. Returns false when TMA cannot describe
// it (strides not multiples of 16 bytes, base not 16-byte aligned, extents out of range, or no driver
// entry point), so the caller falls back to cp.async.
bool encode_kv_tensor_map(CUtensorMap* map, const void* base, int64_t tokens, int64_t heads, int64_t head_dim,
                          int64_t stride_tok, int64_t stride_head, int box_rows);

// A paged cache [pages, page_size, heads, D] (any layout, element strides page/slot/head), boxes of
// box_rows slots x 1 head x 64 columns of one page; same conditions as above.
bool encode_paged_tensor_map(CUtensorMap* map, const void* base, int64_t pages, int64_t page_size, int64_t heads,
                             int64_t head_dim, int64_t stride_page, int64_t stride_tok, int64_t stride_head,
                             int box_rows);

// Q or O [tokens, kv_heads * group, D] (element strides tok, head, 1) as [tokens, kv_heads, group, D],
// in boxes of tile_rows / group tokens x 1 kv head x group heads x 64 columns: one box is a tile of
// packed rows (token-major, the group's heads fastest). Needs group to divide tile_rows.
bool encode_packed_rows_tensor_map(CUtensorMap* map, const void* base, int64_t tokens, int64_t kv_heads, int64_t group,
                         int64_t head_dim, int64_t stride_tok, int64_t stride_head, int tile_rows);

}  // namespace kvinfer::detail
