#include "job_schedule.h"

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "launch.h"

namespace kvinfer::detail {

namespace {
// End of the KV range [kv_begin, kv_end) that query tile qo_tile reads (causal: its last row's diagonal).
int64_t item_kv_end(int64_t qo_len, int64_t kv_len, int64_t qo_tile, int64_t kv_end, int64_t group, bool causal,
                    int tile_rows) {
  const int64_t rows = qo_len * group, row_end = std::min(rows, (qo_tile + 1) * tile_rows);
  int64_t hi = std::min(kv_end, kv_len);
  if (causal && row_end > 0) hi = std::min(hi, (row_end - 1) / group + (kv_len - qo_len) + 1);
  return hi;
}
}  // namespace

int32_t item_kv_tiles(int64_t qo_len, int64_t kv_len, int64_t qo_tile, int64_t kv_begin, int64_t kv_end,
                      int64_t group, bool causal, int tile_rows, int kv_rows) {
  const int64_t hi = item_kv_end(qo_len, kv_len, qo_tile, kv_end, group, causal, tile_rows);
  return hi > kv_begin ? int32_t((hi - kv_begin + kv_rows - 1) / kv_rows) : 0;
}

int sm90_pick_kv_rows(int head_dim, const int32_t* qo_indptr, const int32_t* kv_len, int64_t batch, int64_t group,
                      bool causal, bool wide_ok) {
  const int base = sm90_kv_rows(head_dim, false), wide = sm90_kv_rows(head_dim, true);
  if (!wide_ok || wide == base) return base;
  // Job costs in base-tile steps, fitted on H200 (ci/sm90_exp.cu, bf16, seqlen 1024-16384, causal and
  // not; the model's time ratios match the measured ones within 3%): a wide step costs 1.36 base steps
  // at D 64 (192 / 128 tokens: 1.5x the work at 1.10x the rate; 2026-11-21) and 1.20 at D 256 (80 / 64
  // tokens: 1.25x the work at 1.04x the rate; 2026-11-22); a job whose last tile is partial pays 0.9
  // step more (that tile goes by cp.async, with a mask pass, and its padding is computed); every job
  // costs 2 steps of prologue and epilogue. Unsplit ranges (the planner splits after this).
  const double kWideStep = head_dim == 256 ? 1.20 : 1.36;
  constexpr double kPartial = 0.9, kJob = 2.0;
  double cost_base = 0, cost_wide = 0;
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t qo_len = int64_t(qo_indptr[b + 1]) - qo_indptr[b];
    const int64_t tiles = (qo_len * group + kSm90TileRows - 1) / kSm90TileRows;
    for (int64_t t = 0; t < tiles; ++t) {
      const int64_t hi = item_kv_end(qo_len, kv_len[b], t, kv_len[b], group, causal, kSm90TileRows);
      if (hi <= 0) continue;
      cost_base += double((hi + base - 1) / base) + (hi % base ? kPartial : 0.0) + kJob;
      cost_wide += kWideStep * double((hi + wide - 1) / wide) + (hi % wide ? kPartial : 0.0) + kJob;
    }
  }
  return cost_wide < 0.98 * cost_base ? wide : base;  // 2%: within the model's error, keep the default
}

namespace {

// Longest per-CTA sum of job costs (tiles + a fixed cost per job) under the kernel's job order
// (section_job in cuda/common/attn_job.cuh) with `hs` heads per section: jobs dealt round-robin, or
// (claimed) each to the least-loaded CTA, which is where the CTA that frees up first claims it. Stops
// early once a CTA's load passes `limit` (loads only grow; the caller then rejects hs).
int64_t makespan(const std::vector<int32_t>& tiles, int heads, int grid, int hs, bool claimed,
                 std::vector<int64_t>& load, int64_t limit) {
  constexpr int kJobCost = 2;  // prologue and epilogue, in KV tiles (fitted on H200 from a seqlen sweep)
  const int64_t n = int64_t(tiles.size());
  // claimed: `load` is a min-heap of the CTAs' loads (which CTA holds a load does not change the
  // longest one); the least-loaded CTA takes the job and sinks to its place.
  std::fill(load.begin(), load.end(), 0);
  const size_t g = load.size();
  int64_t longest = 0, w = 0;
  for (int sec = 0; sec * hs < heads; ++sec) {
    const int h = std::min(hs, heads - sec * hs);
    for (int64_t item = 0; item < n; ++item, w += h) {
      const int64_t c = tiles[item] + kJobCost;
      for (int j = 0; j < h; ++j) {
        int64_t v;
        if (!claimed) {
          v = load[size_t((w + j) % grid)] += c;
        } else {
          v = load[0] + c;
          size_t i = 0;
          for (;;) {
            size_t m = 2 * i + 1;
            if (m >= g) break;
            if (m + 1 < g && load[m + 1] < load[m]) ++m;
            if (load[m] >= v) break;
            load[i] = load[m];
            i = m;
          }
          load[i] = v;
        }
        longest = std::max(longest, v);
        if (longest > limit) return longest;
      }
    }
  }
  return longest;
}
}  // namespace

int job_head_section(const std::vector<int32_t>& item_tiles, int num_kv_heads, int grid, bool claimed,
                     int slack_permille, bool pow2_divisors) {
  if (num_kv_heads <= 1 || item_tiles.empty() || grid <= 0) return 1;
  const bool uniform = std::all_of(item_tiles.begin(), item_tiles.end(), [&](int32_t t) { return t == item_tiles[0]; });
  if (uniform) return 1;  // equal jobs: any order is balanced
  // The simulation costs O(jobs) per candidate; past this many jobs keep the balanced order.
  if (int64_t(item_tiles.size()) * num_kv_heads > (int64_t(1) << 18)) return num_kv_heads;
  std::vector<int64_t> load(grid);
  const int64_t all = makespan(item_tiles, num_kv_heads, grid, num_kv_heads, claimed, load, INT64_MAX);
  const int64_t limit = all * (1000 + slack_permille) / 1000;
  for (int hs = 1; hs < num_kv_heads; hs *= 2) {
    if (pow2_divisors && num_kv_heads % hs != 0) break;  // no larger power of two divides it either
    if (makespan(item_tiles, num_kv_heads, grid, hs, claimed, load, limit) <= limit) return hs;
  }
  return num_kv_heads;
}

}  // namespace kvinfer::detail
