// The Hopper kernel's job list: which (work item, kv head) job comes w-th, the KV tiles and query
// rows a job covers, and the slot through which the producer hands a job to the consumers.
#pragma once
#include "common/attn_job.cuh"
#include "launch.h"

namespace kvinfer::detail::attn90 {

using attn::Job;

// Job w of the persistent list: (work item, kv head), in sections of hs heads (section_job). The
// last `tail` items (the planner's tail split: KV pieces of a few items) come after every section, all
// heads of an item side by side, so the grid ends on short jobs.
__device__ __forceinline__ void job_of(const AttnParams& p, int hs, int tail, int w, int num_items, int& item, int& kvh) {
  const int hkv = p.num_kv_heads;
  num_items -= tail;
  if (w >= num_items * hkv) {
    const unsigned r = unsigned(w - num_items * hkv);
    item = num_items + int(r / unsigned(hkv)), kvh = int(r % unsigned(hkv));
    return;
  }
  attn::section_job(hs, hkv, num_items, unsigned(w), item, kvh);
}

// Per-job geometry shared by producer and consumers (both must agree on every job and tile count).
struct JobRange {
  int packed_rows, row0, offset, qa, qb, kv_lo, kv_hi, tile_start, num_tiles;
};
template <int kN>
__device__ __forceinline__ JobRange job_range(const AttnParams& p, const Job& job) {
  JobRange r;
  r.packed_rows = job.qo_len * p.group;
  r.row0 = job.qo_tile * kSm90TileRows;
  r.offset = job.kv_len - job.qo_len;  // bottom-right alignment of queries
  r.qa = int(unsigned(r.row0) / unsigned(p.group));  // non-negative: unsigned division is shorter
  r.qb = int(unsigned(max(min(r.row0 + kSm90TileRows, r.packed_rows) - 1, 0)) / unsigned(p.group));
  r.kv_lo = job.kv_begin, r.kv_hi = min(job.kv_end, job.kv_len);
  if (p.causal) r.kv_hi = min(r.kv_hi, r.qb + r.offset + 1);
  if (p.window_left >= 0) r.kv_lo = max(r.kv_lo, r.qa + r.offset - p.window_left);
  const int first_tile = r.kv_lo > job.kv_begin ? (r.kv_lo - job.kv_begin) / kN : 0;
  r.tile_start = job.kv_begin + first_tile * kN;
  r.num_tiles = r.kv_hi > r.tile_start ? (r.kv_hi - r.tile_start + kN - 1) / kN : 0;
  return r;
}

// A job as the consumers see it. The producer resolves it (job list, work item, JobRange) and writes
// it into the slot of the job's Q buffer before that buffer's full barrier; the consumers read it
// after the barrier, so they do no index arithmetic or global loads between jobs. r.num_tiles < 0:
// no more jobs.
struct alignas(16) JobSlot {
  JobRange r;
  int qo_len, qo_begin, kvh, partial, splits, request;
};
static_assert(sizeof(JobSlot) == 64, "one 64-byte slot per Q buffer");

}  // namespace kvinfer::detail::attn90
