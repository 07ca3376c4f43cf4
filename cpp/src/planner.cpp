// Decode planner: one chunk length from the work per CTA, then one work item per chunk, longest requests first.
#include <algorithm>
#include <numeric>
#include <string>

#include "kvinfer/plan.h"

#include "check.h"

namespace kvinfer {

namespace {

[[noreturn]] void bad(const std::string& msg) { throw Error(ErrorKind::kValueError, msg); }

std::vector<int64_t> kv_lengths(const int32_t* kv_indptr, const int32_t* last_page_len, int64_t batch,
                                int page_size) {
  if (batch < 0) bad("kv_indptr: expected batch_size + 1 >= 1 entries");
  if (kv_indptr[0] != 0) bad("kv_indptr: must start at 0, got " + std::to_string(kv_indptr[0]));
  std::vector<int64_t> len(batch);
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t pages = int64_t(kv_indptr[b + 1]) - kv_indptr[b];
    if (pages < 0)
      bad("kv_indptr: must be non-decreasing, but kv_indptr[" + std::to_string(b + 1) + "] = " +
          std::to_string(kv_indptr[b + 1]) + " < kv_indptr[" + std::to_string(b) + "] = " + std::to_string(kv_indptr[b]));
    const int32_t last = last_page_len[b];
    if (last < (pages == 0 ? 0 : 1) || last > page_size)  // a request without pages has no last page
      bad("kv_last_page_len: entry " + std::to_string(b) + " is " + std::to_string(last) + ", expected 1.." +
          std::to_string(page_size) + " (the page size)");
    len[b] = pages == 0 ? 0 : (pages - 1) * page_size + last;
  }
  return len;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

DecodePlan plan_decode(const int32_t* kv_indptr, const int32_t* kv_last_page_len, int64_t batch,
                       const DecodePlanOptions& opt) {
  if (opt.page_size < 1) bad("page_size: must be >= 1, got " + std::to_string(opt.page_size));
  if (opt.num_kv_heads < 1 || opt.num_qo_heads % opt.num_kv_heads != 0)
    bad("num_qo_heads (" + std::to_string(opt.num_qo_heads) + ") must be a positive multiple of num_kv_heads (" +
        std::to_string(opt.num_kv_heads) + ")");
  const std::vector<int64_t> len = kv_lengths(kv_indptr, kv_last_page_len, batch, opt.page_size);
  const int64_t max_len = len.empty() ? 0 : *std::max_element(len.begin(), len.end());

  DecodePlan p;
  // The grid cannot finish before total work / target_ctas (tokens per CTA slot), nor before its
  // longest chunk. Chunks of about that share (rounded up to min_chunk_tokens, at most the longest
  // request) make the two bounds meet: a skewed batch splits only its long requests, and a batch
  // that already fills the GPU is not split at all.
  const int64_t unit = std::max(1, opt.min_chunk_tokens);
  int64_t total = 0;
  for (int64_t l : len) total += std::max<int64_t>(l, 1);
  const int64_t share = ceil_div(total * opt.num_kv_heads, std::max(1, opt.target_ctas));
  p.chunk_tokens = std::min(std::max<int64_t>(max_len, 1), std::max(unit, ceil_div(share, unit) * unit));

  // Longest requests first, so the long chunks start early and short work fills the tail.
  std::vector<int64_t> order(batch);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return len[a] > len[b]; });
  std::vector<int64_t> splits(batch);
  for (int64_t b = 0; b < batch; ++b) splits[b] = std::max<int64_t>(1, ceil_div(len[b], p.chunk_tokens));
  p.merge_indptr.assign(batch + 1, 0);
  for (int64_t b = 0; b < batch; ++b) p.merge_indptr[b + 1] = p.merge_indptr[b] + (splits[b] > 1 ? int32_t(splits[b]) : 0);
  p.num_partials = p.merge_indptr[batch];
  for (int64_t b : order) {
    for (int64_t c = 0; c < splits[b]; ++c) {
      p.work_request.push_back(int32_t(b));
      p.work_kv_begin.push_back(int32_t(c * p.chunk_tokens));
      p.work_kv_end.push_back(int32_t(std::min(len[b], (c + 1) * p.chunk_tokens)));
      p.work_partial.push_back(splits[b] > 1 ? int32_t(p.merge_indptr[b] + c) : -1);
    }
  }
  const int64_t align = 256;  // each array starts on a 256-byte boundary of the workspace
  auto bytes = [&](int64_t n) { return ceil_div(n * int64_t(sizeof(int32_t)), align) * align; };
  p.int_workspace_bytes = 4 * bytes(p.num_work()) + bytes(batch + 1);
  p.float_workspace_bytes = bytes(p.num_partials * opt.num_qo_heads * int64_t(opt.head_dim)) +
                            bytes(p.num_partials * opt.num_qo_heads);
  return p;
}

DecodePlan plan_decode(const TensorView& kv_indptr, const TensorView& kv_last_page_len, const DecodePlanOptions& opt) {
  for (const TensorView* t : {&kv_indptr, &kv_last_page_len}) {
    detail::expect_index_array(*t);
    if (t->device_type != kDLCPU && t->device_type != kDLCUDAHost)
      detail::fail(ErrorKind::kValueError, std::string(t->name) + ": plan() takes host arrays (numpy or CPU tensors), "
                                           "so planning never waits for the GPU");
  }
  if (kv_indptr.size(0) < 1) detail::fail(ErrorKind::kValueError, "kv_indptr: expected batch_size + 1 >= 1 entries, got 0");
  detail::expect_index_array(kv_last_page_len, kv_indptr.size(0) - 1, "batch_size (len(kv_indptr) - 1)");
  return plan_decode(static_cast<const int32_t*>(kv_indptr.data), static_cast<const int32_t*>(kv_last_page_len.data),
                     kv_indptr.size(0) - 1, opt);
}

}  // namespace kvinfer
