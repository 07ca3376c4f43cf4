// Hopper attention kernel: tile shape, pipeline depth, shared-memory layout and register split per
// head dim and KV tile (cuda/sm90/attention_kernel.cuh and its launcher use it).
#pragma once
#include "launch.h"  // kSm90TileRows, sm90_kv_rows

namespace kvinfer::detail::attn90 {

template <int D, int KV>
struct Config {
  static constexpr int kM = kSm90TileRows;        // packed query rows per CTA tile
  static constexpr int kConsumers = kM / 64;      // one warpgroup per 64 rows
  static constexpr int kThreads = 128 * (1 + kConsumers);
  static constexpr int kN = KV;                   // KV tokens per tile (S: kN / 2 registers per thread)
  static_assert(KV == sm90_kv_rows(D, false) || KV == sm90_kv_rows(D, true), "KV tile of this head dim");
  static constexpr int kStages = D == 64 ? (kN > 128 ? 3 : 4) : 2;  // 4 wide D 64 stages would not fit
  static constexpr int kChunks = D / 8;           // 16-byte chunks per row
  static constexpr int kTileQ = kM * D * 2, kTileKV = kN * D * 2;
  // Q is double-buffered where shared memory allows (not at D = 256): the next job's Q then loads
  // while this job runs, instead of after its last S = Q K^T (short jobs waited on it).
  static constexpr int kQBuffers = D == 256 ? 1 : 2;
  // O is staged for its TMA store in a buffer of its own, so a job's Q buffer goes back to the producer
  // as soon as its last S = Q K^T is done, not after its O has left. kOBuffer (two Q buffers): one O
  // buffer of kM rows, a half per consumer warpgroup. D 256 has room for 64 rows only: the two
  // warpgroups take turns with it (named barriers 6 + wg pass it on once a store has read it). kORegs
  // (D 256's 80-token KV tile, whose stages take that room): no O buffer, each thread's rows leave from
  // registers in 16-byte chunks after a transpose among the 4 threads of a row (with the 64-token tile
  // this ran 0.98x causal: the buffer's turns cost nothing the other warpgroup does not hide).
  static constexpr bool kOBuffer = kQBuffers > 1;
  // Softmax turns (D 128): besides the pingpong of matrix issues, the two warpgroups' softmaxes
  // alternate, so that neither shares the MUFU pipe (exponentials, bf16 packs) with the other's:
  // 1.003-1.005x at seqlen 4096-16384 non-causal (H200, 2026-11-22, ci/sm90_exp.sh, two rounds). D 64 /
  // 256 ran 0.98x / 0.95x with them; releasing the turn after the bf16 packs instead ran 0.99x at D 128.
  static constexpr bool kSoftmaxTurns = D == 128;
  static constexpr bool kORegs = D == 256 && kN > 64;
  // Speculative softmax maxima (common/online_softmax.cuh), except in D 256's 80-token tile: there S, P
  // (both kept until the check) and O's 128 registers per thread spill 240 bytes, and the planner's wide
  // choice at 8192-16384 tokens fell to 0.84-0.90x cuDNN (H200, 2026-11-22); it keeps the exact step.
  static constexpr bool kSpecMax = !kORegs;
  static constexpr int kORows = kOBuffer ? kM : kORegs ? 0 : 64;
  static constexpr int kTileO = kORows * D * 2;
  static constexpr int kOffK = kQBuffers * kTileQ, kOffV = kOffK + kStages * kTileKV;
  static constexpr int kOffO = kOffV + kStages * kTileKV, kOffBar = kOffO + kTileO;
  static constexpr int kNumBars = 2 * kQBuffers + 4 * kStages;
  // Job slots (one per Q buffer: the producer writes a job's geometry with its Q), then two words
  // through which the producer's thread 0 hands its next job index to the other producer threads.
  static constexpr int kOffSlot = (kOffBar + kNumBars * 8 + 15) / 16 * 16;
  static constexpr int kOffNext = kOffSlot + kQBuffers * 64;
  static constexpr int kSmemBytes = kOffNext + 8 + 1024;  // + slack to align the base to 1024
  // Register split (setmaxnreg): the producer only computes addresses. setmaxnreg only moves
  // registers within the CTA's launch allocation (threads x the launch-bound count, 168 for 384
  // threads): asking for more blocks forever (a 64 / 224 split hung).
  static constexpr int kProducerRegs = 56, kConsumerRegs = 224;
  static constexpr int kLaunchRegs = (65536 / kThreads) / 8 * 8;
  static_assert(128 * kProducerRegs + 128 * kConsumers * kConsumerRegs <= kThreads * kLaunchRegs, "register split");
  static_assert(kSmemBytes <= 227 * 1024, "shared memory");
};

}  // namespace kvinfer::detail::attn90
