// Timing harness of the Hopper attention kernel alone (single request, implicit work list), for
// experiments with the KVINFER_EXP_* switches in cuda/sm90/attention_kernel.cuh.
//   exp [L=4096] [causal=0] [heads=32] [head_dim=128]     (bf16, random normal data like torch.randn)
// Env: EXP_KV=192 / 80 (D 64 / 256: the wide KV tile), EXP_STATIC=1 (static job order instead of the claim counter plans use), EXP_NO_TMA=1 (K/V tiles by cp.async), EXP_NO_QTMA=1 (Q by cp.async), EXP_NO_OTMA=1 (O
// by 16-byte stores), EXP_HS=n (kv heads per
// job section; default: the library's choice), EXP_PAGE=n (K/V read as a paged cache of n-token pages,
// [L / n, n, H, D], through a shuffled page table; EXP_PAGE_ORDER=1 keeps pages in order).
// Built with -DKVINFER_EXP_TRACE it also prints where CTA 0's time goes per job (clock64 events).
// nvcc -std=c++17 --expt-relaxed-constexpr -gencode=arch=compute_90a,code=sm_90a -O3 -I cuda -I cpp/src
//      -I cpp/include -I third_party/dlpack/include -I <cutlass include> ci/sm90_exp.cu -o exp [-DKVINFER_EXP_...]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <random>
#include <tuple>
#include <vector>

#include "sm90/attention_launch.cuh"
#include "../cpp/src/job_schedule.cpp"
#include "../cpp/src/tma.cpp"

using namespace kvinfer;
using namespace kvinfer::detail;

#ifdef KVINFER_EXP_TRACE
using Trace = unsigned long long[2][4096];  // attn90::g_trace: CTA 0's (clock << 8 | code) per side
// Median cycles between consecutive events (code a -> next code b) over the recorded timeline of a side
// (medians: a rare wrapped or cross-launch stamp would swamp a mean).
static void trace_report(const Trace& t) {
  const char* names[2] = {"producer", "consumer"};
  for (int side = 0; side < 2; ++side) {
    std::map<std::pair<int, int>, std::vector<long long>> seg;  // (code, next code) -> deltas
    int n = 0;
    while (n < 4096 && t[side][n]) ++n;
    std::vector<long long> job_start;
    for (int i = 0; i + 1 < n; ++i) {
      const int a = int(t[side][i] & 255), b = int(t[side][i + 1] & 255);
      const long long d = (long long)(t[side][i + 1] >> 8) - (long long)(t[side][i] >> 8);
      seg[{a, b}].push_back(d);
      if (a == (side ? 1 : 20)) job_start.push_back((long long)(t[side][i] >> 8));
    }
    printf("  %s: %d events, %zu jobs", names[side], n, job_start.size());
    if (job_start.size() > 2) {
      std::vector<long long> dj;
      for (size_t i = 1; i < job_start.size(); ++i) dj.push_back(job_start[i] - job_start[i - 1]);
      std::nth_element(dj.begin(), dj.begin() + dj.size() / 2, dj.end());
      printf(", median job %lld cycles", dj[dj.size() / 2]);
    }
    printf("\n   ");
    for (auto& [k, v] : seg) {
      std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
      printf(" %d>%d:%lld(x%zu)", k.first, k.second, v[v.size() / 2], v.size());
    }
    printf("\n");
  }
}
// CTA 0's merged producer (P) / consumer warpgroup 0 (C) events around its 9th job start (consumer code
// 1), in cycles from it: which side waits at a job boundary.
static void trace_boundary(const Trace& t) {
  std::vector<std::tuple<long long, int, int>> ev;  // (time, side, code)
  for (int side = 0; side < 2; ++side)
    for (int i = 0; i < 4096 && t[side][i]; ++i) ev.emplace_back((long long)(t[side][i] >> 8), side, int(t[side][i] & 255));
  std::sort(ev.begin(), ev.end());
  int starts = 0;
  for (size_t i = 0; i < ev.size(); ++i) {
    if (std::get<1>(ev[i]) != 1 || std::get<2>(ev[i]) != 1 || ++starts != 9) continue;
    const long long t0 = std::get<0>(ev[i]);
    printf("  boundary:");
    for (size_t j = i > 40 ? i - 40 : 0; j < ev.size() && j < i + 14; ++j)
      printf(" %c%d@%lld", std::get<1>(ev[j]) ? 'C' : 'P', std::get<2>(ev[j]), std::get<0>(ev[j]) - t0);
    printf("\n");
    return;
  }
}
// Load balance over the grid: each CTA's consumer span (first job start to last job end, ns).
static void span_report(int grid) {
  static unsigned long long sp[1024][2];
  cudaMemcpyFromSymbol(sp, attn90::g_span, sizeof(sp));
  unsigned long long t0 = ~0ull, t1 = 0;
  double sum = 0, mx = 0;
  for (int c = 0; c < grid && c < 1024; ++c) {
    t0 = std::min(t0, sp[c][0]), t1 = std::max(t1, sp[c][1]);
    const double d = double(sp[c][1] - sp[c][0]);
    sum += d, mx = std::max(mx, d);
  }
  printf("  spans: kernel %.1f us, CTA busy mean %.1f us, max %.1f us (max/mean %.3f)\n", (t1 - t0) * 1e-3,
         sum / grid * 1e-3, mx * 1e-3, mx / (sum / grid));
}
#endif

template <int D, int KV>
static int run(int L, bool causal, int H) {
  const size_t n = size_t(L) * H * D;
  __nv_bfloat16 *q, *k, *v, *o;
  cudaMalloc(&q, n * 2), cudaMalloc(&k, n * 2), cudaMalloc(&v, n * 2), cudaMalloc(&o, n * 2);
  std::vector<__nv_bfloat16> h(n);
  std::mt19937 gen(1234);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (__nv_bfloat16* dst : {q, k, v}) {
    for (size_t i = 0; i < n; ++i) h[i] = __float2bfloat16(nd(gen));
    cudaMemcpy(dst, h.data(), n * 2, cudaMemcpyHostToDevice);
  }
  AttnParams p;
  p.num_qo_heads = H, p.num_kv_heads = H, p.group = 1, p.head_dim = D;
  p.q = q, p.q_stride_n = int64_t(H) * D, p.q_stride_h = D;
  p.k = k, p.v = v, p.k_stride_tok = p.v_stride_tok = int64_t(H) * D, p.k_stride_h = p.v_stride_h = D;
  p.o = o, p.o_stride_n = int64_t(H) * D, p.o_stride_h = D;
  p.single_qo_len = L, p.single_kv_len = L;
  p.implicit_qo_tiles = (L + 127) / 128, p.implicit_splits = 1, p.implicit_chunk = L;
  p.causal = causal, p.sm_scale = 1.f / std::sqrt(float(D));
  const int ps = getenv("EXP_PAGE") ? atoi(getenv("EXP_PAGE")) : 0;
  int32_t* ids = nullptr;
  int64_t* page_off = nullptr;
  if (ps > 0) {
    // The same K/V memory read as pages [L / ps, ps, H, D] in a shuffled (or kept) order; the data's
    // token order changes, the work does not.
    const int pages = (L + ps - 1) / ps;
    std::vector<int32_t> h_ids(pages);
    std::vector<int64_t> h_off(pages);
    for (int i = 0; i < pages; ++i) h_ids[i] = i;
    if (getenv("EXP_PAGE_ORDER") == nullptr) std::shuffle(h_ids.begin(), h_ids.end(), gen);
    for (int i = 0; i < pages; ++i) h_off[i] = int64_t(h_ids[i]) * ps * H * D;
    cudaMalloc(&ids, pages * 4), cudaMalloc(&page_off, pages * 8);
    cudaMemcpy(ids, h_ids.data(), pages * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(page_off, h_off.data(), pages * 8, cudaMemcpyHostToDevice);
    p.page_size = ps, p.kv_indices = ids, p.num_pages = L / ps;
    p.k_stride_page = p.v_stride_page = int64_t(ps) * H * D;
    p.page_off_k = p.page_off_v = page_off;
    const int rows = KV;
    p.use_tma = getenv("EXP_NO_TMA") == nullptr && ps % 8 == 0 && (rows % ps == 0 || ps % rows == 0) &&
                encode_paged_tensor_map(&p.tma_k, k, L / ps, ps, H, D, p.k_stride_page, int64_t(H) * D, D, std::min(ps, rows)) &&
                encode_paged_tensor_map(&p.tma_v, v, L / ps, ps, H, D, p.v_stride_page, int64_t(H) * D, D, std::min(ps, rows));
  } else {
    p.use_tma = getenv("EXP_NO_TMA") == nullptr &&
                encode_kv_tensor_map(&p.tma_k, k, L, H, D, int64_t(H) * D, D, KV) &&
                encode_kv_tensor_map(&p.tma_v, v, L, H, D, int64_t(H) * D, D, KV);
  }
  p.q_tma = getenv("EXP_NO_QTMA") == nullptr &&
            encode_packed_rows_tensor_map(&p.tma_q, q, L, H, 1, D, int64_t(H) * D, D, kSm90TileRows);
  p.o_tma = getenv("EXP_NO_OTMA") == nullptr &&
            encode_packed_rows_tensor_map(&p.tma_o, o, L, H, 1, D, int64_t(H) * D, D, kSm90TileRows / 2);
  int sms = 0;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  p.grid_x = std::min(sms, p.implicit_qo_tiles * H);
  // Job order: the library's choice (job_head_section), or EXP_HS heads per section.
  std::vector<int32_t> tiles(p.implicit_qo_tiles);
  for (int i = 0; i < p.implicit_qo_tiles; ++i)
    tiles[i] = item_kv_tiles(L, L, causal ? p.implicit_qo_tiles - 1 - i : i, 0, L, 1, causal, kSm90TileRows, KV);
  // Jobs after the first wave: claimed through a counter (as plans run), or EXP_STATIC=1: i + grid, ...
  const bool claimed = getenv("EXP_STATIC") == nullptr;
  if (claimed) cudaMalloc(&p.sched, 8), cudaMemset(p.sched, 0, 8);
  p.head_section = getenv("EXP_HS") ? atoi(getenv("EXP_HS")) : job_head_section(tiles, H, p.grid_x, claimed, 20, false);
  cudaEvent_t a, b;
  cudaEventCreate(&a), cudaEventCreate(&b);
  // EXP_REPS (default 20) timed launches after as many warmup launches: hundreds keep the GPU busy long
  // enough to reach its power-limited clock, as in the benchmarks.
  const int reps = getenv("EXP_REPS") ? std::max(1, atoi(getenv("EXP_REPS"))) : 20;
  for (int i = 0; i < reps; ++i) launch_attention_sm90<D, KV, DType::kBF16>(p, 0);
  std::vector<float> times;
  for (int i = 0; i < reps; ++i) {
    cudaEventRecord(a);
    launch_attention_sm90<D, KV, DType::kBF16>(p, 0);
    cudaEventRecord(b);
    cudaEventSynchronize(b);
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    times.push_back(ms);
  }
  std::sort(times.begin(), times.end());
  const float ms = times[reps / 2];
  const double flops = 4.0 * L * L * H * D * (causal ? 0.5 : 1.0);
  printf("D=%d KV=%d L=%d H=%d causal=%d page=%d hs=%d claimed=%d tma=%d/%d: %.1f us, %.0f TFLOP/s (%s)\n", D, KV, L, H, causal, ps,
         p.head_section, int(claimed), int(p.use_tma), int(p.q_tma), ms * 1e3, flops / (ms * 1e-3) / 1e12, cudaGetErrorString(cudaGetLastError()));
#ifdef KVINFER_EXP_TRACE
  static Trace trace;  // CTA 0's events (both sides), read once for both reports
  cudaMemcpyFromSymbol(trace, attn90::g_trace, sizeof(trace));
  trace_report(trace);
  trace_boundary(trace);
  span_report(p.grid_x);
#endif
  cudaFree(q), cudaFree(k), cudaFree(v), cudaFree(o), cudaFree(p.sched), cudaFree(ids), cudaFree(page_off);
  return 0;
}

int main(int argc, char** argv) {
  const int L = argc > 1 ? atoi(argv[1]) : 4096;
  const bool causal = argc > 2 && atoi(argv[2]);
  const int H = argc > 3 ? atoi(argv[3]) : 32, D = argc > 4 ? atoi(argv[4]) : 128;
  // EXP_KV=192 (D 64) / 80 (D 256): the head dim's wide KV tile (default: each head dim's default tile).
  const bool wide = getenv("EXP_KV") && atoi(getenv("EXP_KV")) == sm90_kv_rows(D, true);
#ifdef EXP_ONLY_D128  // faster builds while iterating
  return D == 128 ? run<128, sm90_kv_rows(128, false)>(L, causal, H) : 1;
#else
  if (D == 64) return wide ? run<64, sm90_kv_rows(64, true)>(L, causal, H) : run<64, sm90_kv_rows(64, false)>(L, causal, H);
  if (D == 256) return wide ? run<256, sm90_kv_rows(256, true)>(L, causal, H) : run<256, sm90_kv_rows(256, false)>(L, causal, H);
  return run<128, sm90_kv_rows(128, false)>(L, causal, H);
#endif
}
