// Job order of the attention kernels: which (work item, kv head) job a CTA takes (the kernels' side is
// section_job in cuda/common/attn_job.cuh), the KV tiles a job reads, and the Hopper KV tile choice.
// Host code (planner and single-request launch).
#pragma once
#include <cstdint>
#include <vector>

namespace kvinfer::detail {

// KV tiles of kv_rows tokens that query tile `qo_tile` (tile_rows packed rows) of a request reads from
// its KV range [kv_begin, kv_end), causal masking included.
int32_t item_kv_tiles(int64_t qo_len, int64_t kv_len, int64_t qo_tile, int64_t kv_begin, int64_t kv_end,
                      int64_t group, bool causal, int tile_rows, int kv_rows);

// KV tile (sm90_kv_rows) for requests with these query and KV lengths (qo_indptr [batch + 1], kv_len
// [batch]): head dims 64 and 256 take their wide tile (192 / 80 tokens) where a cost model of the jobs
// says it is faster (long KV); `wide_ok` false (CUDA-graph plans, page sizes that do not tile it) keeps the default.
int sm90_pick_kv_rows(int head_dim, const int32_t* qo_indptr, const int32_t* kv_len, int64_t batch, int64_t group,
                      bool causal, bool wide_ok);

// Kv heads per job section (AttnParams::head_section) for `grid` CTAs working through
// item_tiles.size() x num_kv_heads jobs in section order: CTA c starts with job c; then, `claimed`,
// each next job goes to the CTA that frees up first (the Hopper kernel's claim counter; the FA2-class
// kernel's one-job CTAs, `grid` = resident CTAs, as the hardware hands out blocks), else CTA c takes
// c + grid, ... Fewer heads per section keep the K/V that the CTAs running at once read in L2 (measured
// on H200: 496 -> 629 TFLOP/s at seqlen 4096, 32 heads, D 128); it returns the fewest heads whose
// simulated longest CTA is within slack_permille of one section of all heads (items of unequal
// length, e.g. causal, otherwise pile up on some CTAs). The Hopper kernel allows 2% (20); the FA2-class
// kernel 1%: its grid ends when its last one-job CTA does. Candidates are powers of two below the head
// count, then all heads; `pow2_divisors` (the FA2-class kernel, whose CTAs map their job by one shift
// and one division) only those that divide the head count.
int job_head_section(const std::vector<int32_t>& item_tiles, int num_kv_heads, int grid, bool claimed,
                     int slack_permille, bool pow2_divisors);

}  // namespace kvinfer::detail
