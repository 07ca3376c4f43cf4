// The online softmax's running maximum, shared by both attention kernels (cuda/sm80, cuda/sm90).
#pragma once
#include <cmath>

#include "common/mma.cuh"  // fast_exp2

namespace kvinfer::cuda {

// One tile's step of a row's running max m (logit units), given the tile's max mx: lazy rescaling. m
// moves to mx only when mx exceeds it by more than 8 in the exponent's log2 units, so P = exp2((s - m) *
// scale) stays below 2^8 (fine for bf16 and fp16 P; P V and the sums accumulate in fp32) and most tiles
// rescale nothing: corr is exactly 1, and the kernels skip O's rescale when no row of a warp moved. The
// softmax is the same (the max cancels). The softmax is issue-bound, and the skipped rescales gave the
// Hopper kernel D 128 +1-2%, D 64 +2%, D 256 +8%, FA2 decode 16 x 2048 +1.6% (H200, 2026-11-22,
// ci/sm90_exp.sh, ci/ab_fa2.sh). Needs scale > 0: the C++ options map sm_scale <= 0 to 1 / sqrt(D) (the
// Python layer rejects it), and the soft-cap path's scale is 1.
struct MaxStep {
  float m;     // the new running max
  float mu;    // m * scale (0 while m is -inf): P = exp2(s * scale - mu)
  float corr;  // factor for O and the row sum (exactly 1 when m did not move)
};
__device__ __forceinline__ MaxStep lazy_max_step(float m, float mx, float scale) {
  const bool move = (mx - m) * scale > 8.f;  // the first tile: m = -inf; both -inf: NaN, false
  const float mk = move ? mx : m;
  const float mu = (mk == -INFINITY ? 0.f : mk) * scale;
  return {mk, mu, move ? fast_exp2(m * scale - mu) : 1.f};
}

// Speculative maxima (both kernels' softmax): a tile's P is first computed against the running max as it
// is, without the tile's row max; where a thread's row sum over the tile stays under kSpecSumLimit every P
// of the row is below it (P >= 0), so the tile stands (the max cancels, and LSE = m scale + log2 l holds
// for any reference m; P < 2^15 is safe for fp16 P, and l / O accumulate in fp32). Otherwise (a logit
// above the running max by about 10 log2 units or more, an inf or NaN sum, as for rows still at m = -inf)
// the row is redone exactly from the kept S with lazy_max_step. A job's first tile (m = -inf) takes the
// exact step at once: the speculative pass there is always wasted (FA2 prefill D 128 causal 2048 +3.7%,
// Hopper D 64 causal 2048 +5%, H200, 2026-11-22).
// The softmax is issue-bound, and the max is 1 of its ~5 instructions per element: the Hopper kernel
// gained 3-9% (D 64 4096 446 -> 474 TFLOP/s, D 128 584-603 -> 639, causal 544-556 -> 603; H100,
// 2026-11-22, ci/sm90_exp.sh, two rounds).
constexpr float kSpecSumLimit = 32768.f;

}  // namespace kvinfer::cuda
