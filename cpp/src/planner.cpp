// Batch attention planner: query tiles per request, one split length from the work per CTA slot,
// one work item per (request, query tile, KV chunk), longest first, and the int workspace image.
#include <algorithm>
#include <cstring>
#include <numeric>
#include <string>

#include "kvinfer/plan.h"

#include "check.h"
#include "device.h"
#include "launch.h"
#include "job_schedule.h"

namespace kvinfer {

namespace {

static_assert(sizeof(PlanWorkItem) == sizeof(detail::AttnWorkItem), "PlanWorkItem mirrors AttnWorkItem");

[[noreturn]] void bad(const std::string& msg) { throw Error(ErrorKind::kValueError, msg); }

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
constexpr int64_t kAlign = 256;  // every workspace array starts on a 256-byte boundary
int64_t aligned(int64_t bytes) { return ceil_div(bytes, kAlign) * kAlign; }

void check_indptr(const int32_t* p, int64_t batch, const char* name) {
  if (p[0] != 0) bad(std::string(name) + ": must start at 0, got " + std::to_string(p[0]));
  for (int64_t b = 0; b < batch; ++b)
    if (p[b + 1] < p[b])
      bad(std::string(name) + ": must be non-decreasing, but " + name + "[" + std::to_string(b + 1) + "] = " +
          std::to_string(p[b + 1]) + " < " + name + "[" + std::to_string(b) + "] = " + std::to_string(p[b]));
}

// Float workspace bytes for n partial rows: outputs [n, H_qo, D] (output dtype), then LSEs [n, H_qo]
// (fp32), each 256-byte aligned.
int64_t partials_bytes(const PlanOptions& opt, int64_t n) {
  const int64_t row_bytes = int64_t(opt.num_qo_heads) * opt.head_dim * opt.out_elem_bytes;
  const int64_t lse_bytes = int64_t(opt.num_qo_heads) * 4;
  return aligned(n * row_bytes) + aligned(n * lse_bytes);
}

// Query tokens in request b's first query tile (the FA3 tail split's tile 0; group divides its rows).
int64_t tile0_tokens(const AttnPlan& p, int64_t b, int64_t group) {
  return std::min<int64_t>(p.qo_indptr[b + 1] - p.qo_indptr[b], detail::kSm90TileRows / group);
}

// The FA3 tail split (see its caller): among K tail items (query tile 0 of the last K requests in the
// work order) and s KV pieces each, the plan with the shortest simulated longest CTA, if it beats the
// plan as it is by 1% after a merge cost. Only for items of equal cost (the FlashAttention grid,
// batches of equal lengths); the model is job_head_section's: a job costs its KV tiles + 2, each
// job goes to the least-loaded CTA. Rewrites p.work and the partial rows; returns the tail items.
int64_t plan_fa3_tail(AttnPlan& p, int64_t group, const PlanOptions& opt, std::vector<int32_t>& tail_splits) {
  const int64_t H = opt.num_kv_heads, N = p.num_work(), jobs = N * H;
  const int64_t G = std::min<int64_t>(jobs, opt.target_ctas);
  if (N == 0 || jobs < 2 * G || jobs % G == 0) return 0;
  auto item_cost = [&](const PlanWorkItem& it, int64_t kv_begin, int64_t kv_end) {
    return int64_t(detail::item_kv_tiles(it.qo_len, it.kv_len, it.qo_tile, kv_begin, kv_end, group, false,
                                         detail::kSm90TileRows, p.kv_rows)) + 2;
  };
  const int64_t c = item_cost(p.work[0], 0, p.work[0].kv_len);
  for (const PlanWorkItem& it : p.work)
    if (it.kv_begin != 0 || it.kv_end < it.kv_len || item_cost(it, 0, it.kv_len) != c) return 0;
  // Tail candidates: the first item (query tile 0) of each request, last requests first.
  std::vector<int64_t> firsts;
  for (int64_t i = N - 1; i >= 0 && firsts.size() < 4; --i)
    if (p.work[i].qo_tile == 0) firsts.push_back(i);
  const int64_t kv_len = p.work[0].kv_len;
  constexpr int64_t kMergeCost = 4;  // the merge kernel (tail rows) and the partial rows, in KV tile steps
  const int64_t base = ceil_div(jobs, G) * c;
  int64_t best = base * 99 / 100, best_k = 0, best_chunk = 0;
  const auto later = [](const std::pair<int64_t, int64_t>& a, const std::pair<int64_t, int64_t>& b) { return a > b; };
  std::vector<std::pair<int64_t, int64_t>> heap;  // (load, CTA), least-loaded on top
  for (int64_t k = 1; k <= int64_t(firsts.size()); ++k)
    for (int64_t s : {2, 3, 4, 6, 8}) {
      const int64_t chunk = ceil_div(ceil_div(kv_len, s), p.kv_rows) * p.kv_rows;
      if (chunk >= kv_len) continue;
      // Main jobs (equal) in rounds, then the pieces, each to the least-loaded CTA.
      const int64_t main = (N - k) * H;
      heap.clear();
      for (int64_t g = 0; g < G; ++g) heap.push_back({(main / G + (g < main % G ? 1 : 0)) * c, g});
      std::make_heap(heap.begin(), heap.end(), later);
      int64_t span = 0;
      for (int64_t t = 0; t < k; ++t)
        for (int64_t b0 = 0; b0 < kv_len; b0 += chunk) {
          const int64_t pc = item_cost(p.work[firsts[t]], b0, std::min(kv_len, b0 + chunk));
          for (int64_t h = 0; h < H; ++h) {
            std::pop_heap(heap.begin(), heap.end(), later);
            heap.back().first += pc;
            std::push_heap(heap.begin(), heap.end(), later);
          }
        }
      for (const auto& e : heap) span = std::max(span, e.first);
      if (span + kMergeCost < best) best = span + kMergeCost, best_k = k, best_chunk = chunk;
    }
  if (best_k == 0) return 0;
  // Partial rows of the tail tiles, in request order (the merge walks rows in token order).
  std::vector<int64_t> tail_req;
  for (int64_t t = 0; t < best_k; ++t) tail_req.push_back(p.work[firsts[t]].request);
  std::sort(tail_req.begin(), tail_req.end());
  const int32_t pieces = int32_t(ceil_div(kv_len, best_chunk));
  std::vector<int64_t> first_partial(p.batch, -1);
  int64_t partials = 0;
  p.tail_row_begin = p.qo_indptr[tail_req.front()];
  for (int64_t b : tail_req) {
    p.tail_row_end = p.qo_indptr[b] + tile0_tokens(p, b, group);
    first_partial[b] = partials;
    partials += tile0_tokens(p, b, group) * pieces;
  }
  // The float workspace must hold them (a plan that fits without the tail split keeps fitting).
  if (opt.float_workspace_bytes > 0 && partials_bytes(opt, partials) > opt.float_workspace_bytes) return 0;
  std::vector<PlanWorkItem> work, tail;
  std::vector<bool> is_tail(N, false);
  for (int64_t t = 0; t < best_k; ++t) is_tail[firsts[t]] = true;
  for (int64_t i = 0; i < N; ++i)
    if (!is_tail[i]) work.push_back(p.work[i]);
  for (int64_t t = best_k - 1; t >= 0; --t) {  // the tail in work order
    const PlanWorkItem& it = p.work[firsts[t]];
    for (int32_t c2 = 0; c2 < pieces; ++c2) {
      PlanWorkItem w = it;
      w.kv_begin = int32_t(c2 * best_chunk), w.kv_end = int32_t(std::min<int64_t>(kv_len, (c2 + 1) * best_chunk));
      w.partial = int32_t(first_partial[it.request] + c2), w.splits = pieces, w.chunk = c2, w.merge = -1;
      tail.push_back(w);
    }
    tail_splits[it.request] = pieces;
  }
  work.insert(work.end(), tail.begin(), tail.end());
  p.work = std::move(work);
  p.num_partials = partials;
  return int64_t(tail.size());
}

}  // namespace

AttnPlan plan_attention(const int32_t* qo_indptr, const int32_t* kv_indptr, const int32_t* kv_last_page_len,
                        int64_t batch, const PlanOptions& opt, const int32_t* kv_indices, int64_t num_kv_indices) {
  if (batch < 0) bad("kv_indptr: expected batch_size + 1 >= 1 entries");
  if (opt.page_size < 0) bad("page_size: must be >= 1 (or 0 for a ragged KV), got " + std::to_string(opt.page_size));
  if (opt.num_kv_heads < 1 || opt.num_qo_heads < 1 || opt.num_qo_heads % opt.num_kv_heads != 0)
    bad("num_qo_heads (" + std::to_string(opt.num_qo_heads) + ") must be a positive multiple of num_kv_heads (" +
        std::to_string(opt.num_kv_heads) + ")");
  const bool fa3 = opt.backend == AttnBackend::kFA3;
  if (opt.backend != AttnBackend::kFA2 && !fa3) bad("backend: expected FA2 (0) or FA3 (1)");
  if (!fa3 && opt.tile_rows != 0 && opt.tile_rows != 16 && opt.tile_rows != 64)
    bad("tile_rows: expected 0 (auto), 16 (decode tile) or 64 (prefill tile), got " + std::to_string(opt.tile_rows));
  if (opt.head_dim != 64 && opt.head_dim != 128 && opt.head_dim != 256)
    bad("head_dim: " + std::to_string(opt.head_dim) + " is not supported (64, 128 or 256)");
  const int64_t group = opt.num_qo_heads / opt.num_kv_heads;

  AttnPlan p;
  p.options = opt;
  p.batch = batch;
  check_indptr(kv_indptr, batch, "kv_indptr");
  if (qo_indptr) check_indptr(qo_indptr, batch, "qo_indptr");
  p.qo_indptr.resize(batch + 1);
  p.kv_begin.resize(batch);
  p.kv_len.resize(batch);
  p.mask_offset.resize(batch);
  int64_t max_rows = 0, mask_bits = 0;
  for (int64_t b = 0; b <= batch; ++b) p.qo_indptr[b] = qo_indptr ? qo_indptr[b] : int32_t(b);
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t n = int64_t(kv_indptr[b + 1]) - kv_indptr[b];
    int64_t len = n;
    if (opt.page_size > 0) {
      const int32_t last = kv_last_page_len[b];
      if (last < (n == 0 ? 0 : 1) || last > opt.page_size)  // a request without pages has no last page
        bad("kv_last_page_len: entry " + std::to_string(b) + " is " + std::to_string(last) + ", expected 1.." +
            std::to_string(opt.page_size) + " (the page size)");
      len = n == 0 ? 0 : (n - 1) * opt.page_size + last;
    }
    if (len > INT32_MAX) bad("kv_indptr: request " + std::to_string(b) + " has more than 2^31 KV tokens");
    p.kv_begin[b] = kv_indptr[b];
    p.kv_len[b] = int32_t(len);
    const int64_t qlen = p.qo_indptr[b + 1] - p.qo_indptr[b];
    p.mask_offset[b] = mask_bits;
    mask_bits += qlen * len;
    max_rows = std::max(max_rows, qlen * group);
  }
  p.total_qo = p.qo_indptr[batch];
  p.mask_bits = mask_bits;
  if (kv_indices) {
    const int64_t need = kv_indptr[batch];
    if (num_kv_indices < need)
      bad("kv_indices: has " + std::to_string(num_kv_indices) + " entries, kv_indptr[-1] needs " + std::to_string(need));
    for (int64_t i = 0; i < need; ++i) {
      if (kv_indices[i] < 0)
        bad("kv_indices: entry " + std::to_string(i) + " is " + std::to_string(kv_indices[i]) + ", expected >= 0");
      p.max_kv_index = std::max<int64_t>(p.max_kv_index, kv_indices[i]);
    }
  }

  const bool graph = opt.capacity_batch > 0 || opt.capacity_rows > 0;  // CUDA-graph mode: fixed layout
  const bool decode_tile = !fa3 && (opt.tile_rows ? opt.tile_rows == 16 : max_rows <= 16);
  p.tile_rows = fa3 ? detail::kSm90TileRows
                    : detail::attn_tile_rows(decode_tile ? detail::AttnTile::kDecode : detail::AttnTile::kPrefill, opt.head_dim);
  std::vector<int64_t> tiles(batch);
  int64_t total = 0, max_len = 1;
  for (int64_t b = 0; b < batch; ++b) {
    tiles[b] = ceil_div((int64_t(p.qo_indptr[b + 1]) - p.qo_indptr[b]) * group, p.tile_rows);
    total += tiles[b] * std::max<int64_t>(p.kv_len[b], 1);
    if (tiles[b] > 0) max_len = std::max<int64_t>(max_len, p.kv_len[b]);
  }
  // The grid cannot finish before total work / target_ctas (tokens per CTA slot), nor before its
  // longest chunk. Chunks of about that share (at least min_chunk_tokens, at most the longest
  // request) make the two bounds meet: a skewed batch splits only its long requests, and a batch
  // that already fills the GPU is not split at all.
  // Chunks are whole KV tiles of the kernel (granule): chunks rounded up to min_chunk_tokens cut 2048
  // tokens as 768 + 768 + 512, and the grid waits on the 768-token CTAs.
  const int64_t unit = std::max(1, opt.min_chunk_tokens);
  // FA3: the KV tile (instance) for this batch. Graph plans keep the default: a captured run()
  // launches one instance. Paged: the wide tile only where pages tile it (TMA boxes).
  const bool wide_ok = !graph && (opt.page_size == 0 || detail::sm90_paged_tma(opt.page_size, detail::sm90_kv_rows(opt.head_dim, true)));
  p.kv_rows = fa3 ? detail::sm90_pick_kv_rows(opt.head_dim, p.qo_indptr.data(), p.kv_len.data(), batch, group, opt.causal, wide_ok)
                  : detail::attn_tile_kv(decode_tile ? detail::AttnTile::kDecode : detail::AttnTile::kPrefill, opt.head_dim);
  const int64_t granule = p.kv_rows;
  auto round_up = [&](int64_t x) { return ceil_div(x, granule) * granule; };
  if (opt.fixed_chunk_tokens > INT32_MAX) bad("fixed_split_size: must be below 2^31 tokens");
  const bool fixed = opt.allow_split && opt.fixed_chunk_tokens > 0;
  // Runs of consecutive requests with the same KV length (their query tiles summed): the cost loop
  // runs per candidate, and a batch of equal lengths is one run.
  struct Run { uint32_t len; int64_t tiles; };
  std::vector<Run> runs;
  for (int64_t b = 0; b < batch; ++b) {
    const uint32_t len = uint32_t(p.kv_len[b]);
    if (!runs.empty() && runs.back().len == len)
      runs.back().tiles += tiles[b];
    else
      runs.push_back({len, tiles[b]});
  }
  // Estimated time of a grid of `slots` resident CTAs running the batch in chunks of `chunk` tokens,
  // in token-slots of bandwidth: equal-length jobs run in waves, and every full wave occupies all
  // slots. Decode tiles are memory-bound: a last wave of R jobs takes as long as max(R, sat) jobs
  // would, where sat jobs keep enough bytes in flight to saturate HBM (fewer run latency-bound), so
  // a tail of a few jobs costs most of a wave. sat is 7/10 of the slots for the wide decode tile and
  // 1/2 for the lean one (fitted on H200, 2026-11-21, ci/split_exp.py: with it the model ranks both
  // tiles and their split lengths as measured at 16/64/128/256 x 2048 and 16/64 x 8192). Prefill
  // tiles are compute-bound: a wave costs a wave. Each job pays a fixed unit / 2 tokens (prologue,
  // pipeline fill, epilogue, merge).
  auto cost = [&](int64_t chunk, int64_t slots, bool lean = false) {
    const uint32_t c32 = uint32_t(chunk);  // 32-bit divisions
    int64_t jobs = 0;
    for (const Run& r : runs) jobs += r.tiles * (r.len > c32 ? (r.len + c32 - 1) / c32 : 1);
    jobs *= opt.num_kv_heads;
    const int64_t waves = std::max<int64_t>(1, ceil_div(jobs, slots)), last = jobs - (waves - 1) * slots;
    const int64_t sat = lean ? (slots + 1) / 2 : (slots * 7 + 9) / 10;
    const int64_t eff = (waves - 1) * slots + (decode_tile ? std::max(last, sat) : slots);
    return eff * (std::min(chunk, max_len) + unit / 2);
  };
  // The split length for a grid of `slots` resident CTAs.
  auto choose_chunk = [&](int64_t slots, bool lean = false) -> int64_t {
    if (fixed) return opt.fixed_chunk_tokens;
    if (!opt.allow_split) return max_len;
    const int64_t share = ceil_div(total * opt.num_kv_heads, std::max<int64_t>(1, slots));
    const int64_t first = std::max<int64_t>(1, std::min(max_len, std::max(unit, round_up(share))));
    if (slots <= 0) return first;
    // Among the share-based chunk and the lengths max_len / s, the cheapest; ties keep the longer.
    int64_t best = first, best_cost = cost(best, slots, lean), prev = -1;
    for (int64_t sp = 1; sp <= 8; ++sp) {
      const int64_t c = std::min(max_len, round_up(ceil_div(max_len, sp)));
      if (c < unit && c < max_len) break;
      if (c == prev || c == best) continue;
      prev = c;
      const int64_t cc = cost(c, slots, lean);
      // A shorter chunk must win by a margin: the model is coarse (no causal shapes, no partial-row
      // traffic). Decode tiles write one partial row per head (1%; their model includes the tail);
      // prefill tiles a tile of rows (10%).
      const int64_t keep = decode_tile ? 99 : 90;
      if (c > best ? cc <= best_cost : cc * 100 < best_cost * keep) best = c, best_cost = cc;
    }
    return std::max<int64_t>(best, 1);
  };
  p.chunk_tokens = choose_chunk(opt.target_ctas);
  // The lean decode tile, unsplit, where the model says it beats the wide tile's best plan by 3%
  // (batches that fill the GPU with finer jobs). Its steady state is 4% slower (its 32-token tiles
  // pay the per-tile costs twice: 4.29 against 4.48 TB/s at 256 x 32768, H200), so its cost counts
  // 1.04x. Not in graph mode (the captured kernel serves every later plan) nor with a fixed split
  // size (batch invariance needs one kernel for every batch).
  if (opt.decode_tile_choice < 0 || opt.decode_tile_choice > 2) bad("decode_tile: expected auto, wide or lean");
  // Forced ("lean"), it splits as its own grid needs (chunks of whole 64-token tiles, which its 32-token
  // tiles divide; the launcher also runs wide-tile plans on it where the wide tile does not fit).
  const bool forced = opt.decode_tile_choice == 2;
  if (decode_tile && !fa3 && !graph && forced) {
    p.lean_decode = true;
    p.chunk_tokens = opt.lean_target_ctas > 0 ? choose_chunk(opt.lean_target_ctas, true) : max_len;
  } else if (decode_tile && !fa3 && !graph && opt.decode_tile_choice == 0 && opt.lean_target_ctas > 0 &&
             opt.target_ctas > 0 && !fixed &&
             cost(max_len, opt.lean_target_ctas, true) * 104 < cost(p.chunk_tokens, opt.target_ctas) * 97) {
    p.lean_decode = true;
    p.chunk_tokens = max_len;
  }

  // Longest KV first, so the long jobs start early and short ones fill the tail.
  std::vector<int64_t> order(batch);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return p.kv_len[a] > p.kv_len[b]; });
  std::vector<int64_t> splits(batch), base(batch, -1);
  for (int64_t b = 0; b < batch; ++b) {
    splits[b] = std::max<int64_t>(1, ceil_div(p.kv_len[b], p.chunk_tokens));
    if (splits[b] > 1) {
      base[b] = p.num_partials;
      p.num_partials += splits[b] * (int64_t(p.qo_indptr[b + 1]) - p.qo_indptr[b]);
    }
  }
  int64_t njobs = 0;
  for (int64_t b = 0; b < batch; ++b) njobs += splits[b] * tiles[b];
  // FA2 decode tile: split groups (request, query tile) are merged by their last CTA.
  p.merge_in_kernel = decode_tile;
  int32_t next_group = 0;
  // Items are written field by field in place: building one on the stack and copying it stalled on
  // store-to-load forwarding (a third of plan() for 1,024 items).
  p.work.resize(njobs);
  PlanWorkItem* w = p.work.data();
  for (int64_t b : order) {
    const int32_t qo_begin = p.qo_indptr[b], qo_len = p.qo_indptr[b + 1] - qo_begin;
    const bool split = splits[b] > 1;
    const int32_t group0 = next_group;  // merge slot of query tile i: group0 + i
    if (split && p.merge_in_kernel) next_group += int32_t(tiles[b]);
    for (int64_t c = 0; c < splits[b]; ++c) {
      const int32_t kv_begin = int32_t(c * p.chunk_tokens);
      const int32_t kv_end = int32_t(std::min<int64_t>(p.kv_len[b], (c + 1) * p.chunk_tokens));
      const int32_t partial = split ? int32_t(base[b] + c) : -1;
      for (int64_t i = 0; i < tiles[b]; ++i, ++w) {
        // Causal: a request's last query tiles attend to the most keys, so they go first.
        const int32_t tile = int32_t(opt.causal ? tiles[b] - 1 - i : i);
        w->request = int32_t(b);
        w->qo_tile = tile;
        w->kv_begin = kv_begin, w->kv_end = kv_end;
        w->partial = partial, w->splits = int32_t(splits[b]), w->chunk = int32_t(c);
        w->merge = split && p.merge_in_kernel ? group0 + tile : -1;
        w->qo_begin = qo_begin, w->qo_len = qo_len, w->kv_len = p.kv_len[b], w->kv_base = p.kv_begin[b];
      }
    }
  }
  p.merge_groups = next_group;
  // FA2-class prefill tile: items heaviest first over the whole batch (causal query tiles of every
  // request by their KV tiles; stable, so equal items keep request order and share K/V in L2), so that
  // the grid, one job per CTA in section order, ends on its shortest jobs (the section is chosen below).
  std::vector<int32_t> fa2_tiles;
  if (!fa3 && !decode_tile) {
    fa2_tiles.resize(p.work.size());
    for (size_t i = 0; i < p.work.size(); ++i) {
      const PlanWorkItem& it = p.work[i];
      fa2_tiles[i] = detail::item_kv_tiles(it.qo_len, it.kv_len, it.qo_tile, it.kv_begin, it.kv_end, group, opt.causal,
                                           int(p.tile_rows), int(p.kv_rows));
    }
    std::vector<int64_t> idx(p.work.size());
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return fa2_tiles[a] > fa2_tiles[b]; });
    std::vector<PlanWorkItem> sorted(p.work.size());
    std::vector<int32_t> sorted_tiles(p.work.size());
    for (size_t i = 0; i < idx.size(); ++i) sorted[i] = p.work[idx[i]], sorted_tiles[i] = fa2_tiles[idx[i]];
    p.work.swap(sorted);
    fa2_tiles.swap(sorted_tiles);
  }
  // FA3, non-causal: a ragged last round of equal jobs (the FlashAttention grid at D 128: 4096 jobs on
  // 132 CTAs, four CTAs run a 32nd job while the rest idle; 1.7% of the run) is filled by splitting the
  // KV of the last few items, query tile 0 of the last requests, into a tail section of shorter jobs
  // (all heads of a tail item side by side), merged by the merge kernel over those rows only: D 128
  // non-causal 4096 / 8192 / 16384 590 / 590-598 / 598-609 -> 598-605 / 603-609 / 609-614 TFLOP/s (H200,
  // 2026-11-21, ci/ab_fa2.sh AB_ARCHS=90a; merging over all rows ate the gain).
  std::vector<int32_t> tail_splits(batch, 0);  // splits of request b's query tile 0 (tail item), or 0
  if (fa3 && !graph && !opt.causal && !fixed && opt.allow_split && p.num_partials == 0 && opt.target_ctas > 0 &&
      detail::kSm90TileRows % group == 0)
    p.tail_items = plan_fa3_tail(p, group, opt, tail_splits);
  if (graph && (batch > opt.capacity_batch || p.total_qo > opt.capacity_rows))
    bad("plan: batch of " + std::to_string(batch) + " requests / " + std::to_string(p.total_qo) +
        " query tokens exceeds the CUDA-graph capacity given at construction (" + std::to_string(opt.capacity_batch) +
        " requests / " + std::to_string(opt.capacity_rows) + " tokens)");
  const int64_t cap_b = graph ? opt.capacity_batch : batch;
  p.merge_rows = graph ? opt.capacity_rows : p.total_qo;
  // Row t merges partial rows [merge_indptr[t], merge_indptr[t+1]): its request's splits, or none
  // (unsplit rows were written directly; the merge leaves them alone). Padding rows are empty.
  p.merge_indptr.assign(p.merge_rows + 1, 0);
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t tail_rows = tail_splits[b] ? tile0_tokens(p, b, group) : 0;
    for (int64_t t = p.qo_indptr[b]; t < p.qo_indptr[b + 1]; ++t)
      p.merge_indptr[t + 1] = p.merge_indptr[t] + int32_t(splits[b] > 1 ? splits[b] : t - p.qo_indptr[b] < tail_rows ? tail_splits[b] : 0);
  }
  for (int64_t t = p.total_qo + 1; t <= p.merge_rows; ++t) p.merge_indptr[t] = p.merge_indptr[p.total_qo];

  // Int workspace: header (work count, batch, head section, 2 FA3 claim counters, FA3 tail items) | qo_indptr | kv_begin | kv_len | mask_offset |
  // merge_indptr | req_bad | merge counters | page offsets (FA3 + paged: written by the device) | work.
  p.off_qo_indptr = kAlign;
  p.off_kv_begin = p.off_qo_indptr + aligned((cap_b + 1) * 4);
  p.off_kv_len = p.off_kv_begin + aligned(cap_b * 4);
  p.off_mask_offset = p.off_kv_len + aligned(cap_b * 4);
  p.off_merge_indptr = p.off_mask_offset + aligned(cap_b * 8);
  p.off_req_bad = p.off_merge_indptr + aligned((p.merge_rows + 1) * 4);
  p.off_merge_ctr = p.off_req_bad + aligned(cap_b * 4);
  // Graph mode: room for every query tile of a full batch (each request's tiles, 16 rows each at most).
  const int64_t ctr_groups =
      !p.merge_in_kernel ? 0 : graph ? ceil_div(opt.capacity_rows * group, p.tile_rows) + cap_b : p.merge_groups;
  p.off_page_off = p.off_merge_ctr + aligned(ctr_groups * opt.num_kv_heads * 4);
  if (fa3 && opt.page_size > 0) {
    const int64_t nnz = batch ? kv_indptr[batch] : 0;
    if (graph && nnz > opt.capacity_pages)
      bad("plan: " + std::to_string(nnz) + " pages exceed the CUDA-graph page capacity (" +
          std::to_string(opt.capacity_pages) + ", the kv_indices buffer given at construction)");
    p.page_off_capacity = graph ? opt.capacity_pages : nnz;
  }
  p.off_work = p.off_page_off + aligned(p.page_off_capacity * 16);
  // FA3: a persistent grid of at most target_ctas CTAs strides over (work item, kv head) pairs.
  const int64_t jobs = fa3 ? p.num_work() * opt.num_kv_heads : p.num_work();
  p.grid_x = opt.fixed_grid > 0 ? opt.fixed_grid
                                : int(std::max<int64_t>(1, fa3 ? std::min<int64_t>(jobs, std::max(1, opt.target_ctas))
                                                               : jobs));
  // The work array holds at least grid_x items (zero padding): the FA2 kernel loads a CTA's first
  // item before the count (AttnParams::work).
  const int64_t work_slots = std::max<int64_t>(p.num_work(), fa3 ? 0 : p.grid_x);
  p.int_workspace_bytes = p.off_work + aligned(work_slots * int64_t(sizeof(PlanWorkItem)));
  if (opt.int_workspace_bytes > 0 && p.int_workspace_bytes > opt.int_workspace_bytes)
    bad("int workspace: this plan needs " + std::to_string(p.int_workspace_bytes) + " bytes, the buffer has " +
        std::to_string(opt.int_workspace_bytes));

  // Float workspace: partial outputs [P, H_qo, D] (output dtype) then their LSEs [P, H_qo] (fp32).
  // Its capacity P follows from the buffer size alone, so the layout never moves between plans.
  const int64_t row_bytes = int64_t(opt.num_qo_heads) * opt.head_dim * opt.out_elem_bytes;
  const int64_t lse_bytes = int64_t(opt.num_qo_heads) * 4;
  p.float_workspace_bytes = partials_bytes(opt, p.num_partials);
  if (opt.float_workspace_bytes > 0) {
    int64_t cap = opt.float_workspace_bytes / (row_bytes + lse_bytes);
    while (cap > 0 && partials_bytes(opt, cap) > opt.float_workspace_bytes) --cap;
    p.partial_capacity = cap;
    p.off_partial_lse = aligned(cap * row_bytes);
    if (p.num_partials > cap)
      bad("float_workspace_buffer: this plan splits long requests into " + std::to_string(p.num_partials) +
          " partial rows and needs " + std::to_string(p.float_workspace_bytes) + " bytes, the buffer has " +
          std::to_string(opt.float_workspace_bytes) + " (pass a bigger buffer)");
  }
  if (fa3) {
    std::vector<int32_t> item_tiles(p.work.size() - size_t(p.tail_items));  // the sections hold the main items
    for (size_t i = 0; i < item_tiles.size(); ++i) {
      const PlanWorkItem& it = p.work[i];
      item_tiles[i] = detail::item_kv_tiles(p.qo_indptr[it.request + 1] - p.qo_indptr[it.request], p.kv_len[it.request],
                                            it.qo_tile, it.kv_begin, it.kv_end, group, opt.causal, detail::kSm90TileRows,
                                            p.kv_rows);
    }
    p.head_section = detail::job_head_section(item_tiles, opt.num_kv_heads, p.grid_x, /*claimed=*/true, 20, false);
  } else if (!decode_tile && !graph && opt.target_ctas > 0) {
    // FA2-class prefill: one CTA per job, handed out in block order to target_ctas resident CTAs as
    // they free up. Graph plans keep the kernel's default order (the captured launch keeps its value).
    p.head_section = detail::job_head_section(fa2_tiles, opt.num_kv_heads, opt.target_ctas, /*claimed=*/true, 10, true);
  }

  // The image run() reads: [0, off_page_off) then [off_work, end) (see AttnPlan::image).
  const int64_t gap = p.off_work - p.off_page_off;
  p.image.assign(p.int_workspace_bytes - gap, 0);
  auto put = [&](int64_t off, const void* src, size_t n) {
    if (n) std::memcpy(p.image.data() + (off >= p.off_work ? off - gap : off), src, n);
  };
  // Header words: items, batch, head section, two claim counters (zero), tail items (FA3).
  const int32_t header[6] = {int32_t(p.num_work()), int32_t(batch), int32_t(p.head_section), 0, 0, int32_t(p.tail_items)};
  put(0, header, sizeof(header));
  put(p.off_qo_indptr, p.qo_indptr.data(), p.qo_indptr.size() * 4);
  put(p.off_kv_begin, p.kv_begin.data(), p.kv_begin.size() * 4);
  put(p.off_kv_len, p.kv_len.data(), p.kv_len.size() * 4);
  put(p.off_mask_offset, p.mask_offset.data(), p.mask_offset.size() * 8);
  put(p.off_merge_indptr, p.merge_indptr.data(), p.merge_indptr.size() * 4);
  put(p.off_work, p.work.data(), p.work.size() * sizeof(PlanWorkItem));
  return p;
}

AttnPlan plan_attention(const TensorView* qo_indptr, const TensorView& kv_indptr, const TensorView* kv_last_page_len,
                        const PlanOptions& opt, const TensorView* kv_indices) {
  for (const TensorView* t : {qo_indptr, &kv_indptr, kv_last_page_len, kv_indices}) {
    if (!t) continue;
    detail::expect_index_array(*t);
    if (t->device_type != kDLCPU && t->device_type != kDLCUDAHost)
      detail::fail(ErrorKind::kValueError, std::string(t->name) + ": plan() takes host arrays (numpy or CPU tensors), "
                                           "so planning never waits for the GPU");
  }
  if (kv_indptr.size(0) < 1) detail::fail(ErrorKind::kValueError, "kv_indptr: expected batch_size + 1 >= 1 entries, got 0");
  const int64_t batch = kv_indptr.size(0) - 1;
  if (qo_indptr) detail::expect_index_array(*qo_indptr, batch + 1, "batch_size + 1 (len(kv_indptr))");
  if (opt.page_size > 0) {
    if (!kv_last_page_len) detail::fail(ErrorKind::kValueError, "kv_last_page_len: required for a paged KV cache");
    detail::expect_index_array(*kv_last_page_len, batch, "batch_size (len(kv_indptr) - 1)");
  }
  return plan_attention(qo_indptr ? static_cast<const int32_t*>(qo_indptr->data) : nullptr,
                        static_cast<const int32_t*>(kv_indptr.data),
                        kv_last_page_len ? static_cast<const int32_t*>(kv_last_page_len->data) : nullptr, batch, opt,
                        kv_indices ? static_cast<const int32_t*>(kv_indices->data) : nullptr,
                        kv_indices ? kv_indices->size(0) : 0);
}

void upload_plan(const AttnPlan& plan, const TensorView& ws, cudaStream_t stream) {
  detail::expect_dtype(ws, {DType::kU8, DType::kI8});
  detail::expect_ndim(ws, 1, "[bytes]");
  if (ws.ndim == 1 && ws.stride(0) != 1) detail::fail(ErrorKind::kValueError, std::string(ws.name) + ": must be contiguous");
  if (ws.size(0) < plan.int_workspace_bytes)
    detail::fail(ErrorKind::kValueError, std::string(ws.name) + ": this plan needs " +
                                             std::to_string(plan.int_workspace_bytes) + " bytes, the buffer has " +
                                             std::to_string(ws.size(0)));
  if (reinterpret_cast<uintptr_t>(ws.data) % kAlign)
    detail::fail(ErrorKind::kValueError, std::string(ws.name) + ": must be 256-byte aligned");
  detail::expect_cuda_same_device({&ws});
  detail::DeviceGuard guard(ws.device_id);
  // Pageable source: the driver stages it before returning, so the plan may change right after.
  // Two pieces when the plan has a device-written page-offset region between them.
  const int64_t head = plan.off_page_off, gap = plan.off_work - plan.off_page_off;
  auto* dst = static_cast<unsigned char*>(ws.data);
  if (gap == 0) {
    detail::check_cuda(cudaMemcpyAsync(dst, plan.image.data(), plan.image.size(), cudaMemcpyHostToDevice, stream),
                       "plan upload to the int workspace");
  } else {
    detail::check_cuda(cudaMemcpyAsync(dst, plan.image.data(), head, cudaMemcpyHostToDevice, stream),
                       "plan upload to the int workspace");
    if (int64_t(plan.image.size()) > head)
      detail::check_cuda(cudaMemcpyAsync(dst + plan.off_work, plan.image.data() + head, plan.image.size() - head,
                                         cudaMemcpyHostToDevice, stream),
                         "plan upload to the int workspace");
  }
}

}  // namespace kvinfer
