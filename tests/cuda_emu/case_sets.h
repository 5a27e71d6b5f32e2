// The case sets of tests/cuda_emu/cases.h (included at its end): quick (CI,
// and the stored digests/quick.txt), full and big (by hand), and the concurrent
// case's four problems (part of quick, float32). A case's seed is its index in
// its set (case_seed): a case added in the middle of quick changes the inputs,
// and so the digests, of the cases after it.
#pragma once

namespace se_cases {

// Shorthands for the tables below.
namespace shorthands {
using AC = Activation;
constexpr AC RL = AC::ReLU, SL = AC::SiLU;
constexpr Gate SG = Gate::Sigmoid, HS = Gate::HardSigmoid;
constexpr DT F32 = DT::F32, F64 = DT::F64, F16 = DT::F16, BF = DT::BF16;
constexpr Excitation EX2 = Excitation::TwoFC, EX1 = Excitation::OneFC, ECA = Excitation::ECA,
                     ECC = Excitation::ECACircular;
}  // namespace shorthands

inline std::vector<Case> quick_cases() {
  using namespace shorthands;
  // {dtype, N, C, H, W, hidden, nhwc, bias, act, gate, resident, unit_bytes (0: the library's)}
  return {
    {F32, 1, 3, 1, 1, 1, false, true, RL, SG, 3, 0},         // HW 1, N 1, hidden 1
    {F32, 5, 37, 7, 7, 4, false, true, SL, HS, 3, 0},
    {F32, 5, 37, 17, 13, 3, false, false, RL, SG, 5, 8000},  // K = 3 chunks (16 planes), last one short
    {F32, 5, 37, 17, 13, 4, true, true, SL, HS, 5, 4000},    // NHWC, K = 10 chunks of 4 channels
    {F32, 3, 72, 4, 4, 16, true, true, SL, SG, 3, 0},        // NHWC 16-byte rows; 2 weight-gradient tiles
    {BF, 2, 3, 17, 13, 1, true, true, SL, SG, 4, 0},         // hidden 1
    {BF, 5, 37, 17, 13, 4, false, true, RL, HS, 5, 2000},    // K = 3
    {BF, 18, 40, 3, 3, 5, true, false, SL, SG, 4, 0},        // N > 16: weight gradients over 2 sample steps
    {F16, 5, 37, 7, 7, 4, true, false, RL, SG, 2, 0},
    {F16, 5, 37, 17, 13, 1, false, true, SL, HS, 5, 3000},   // hidden 1, K = 3
    {F16, 1, 16, 1, 1, 4, true, true, RL, SG, 3, 0},         // HW 1 channels_last (runs as NCHW)
    {F64, 2, 1, 5, 5, 1, false, true, SL, SG, 2, 0},         // C 1
    {F64, 3, 37, 7, 7, 4, true, true, RL, HS, 5, 3000},      // NHWC, K = 5
    {F64, 1, 3, 17, 13, 1, false, false, RL, SG, 3, 0},
    // NaN and Inf masks (every activation and gate, both layouts, several chunks)
    {F32, 4, 37, 7, 7, 4, false, true, RL, SG, 3, 0, true},
    {BF, 4, 37, 17, 13, 4, true, true, SL, HS, 5, 2000, true},
    {F16, 4, 37, 7, 7, 4, false, true, AC::HardSwish, SG, 3, 3000, true},
    {F64, 3, 24, 5, 5, 3, true, false, RL, HS, 3, 600, true},
    // The other excitations and the residual gate: {..., specials, excitation, k, residual}
    // (hidden 0: no hidden layer). One FC: the rows (forward) and columns (backward) of w1
    // [C, C] over the sample's whole vector, written by the other chunks.
    {F32, 5, 37, 17, 13, 0, false, true, RL, SG, 5, 8000, false, EX1, 0, false},  // K = 3
    {F32, 3, 72, 4, 4, 0, true, true, RL, HS, 3, 0, false, EX1, 0, true},       // 2 x 2 dw1 tiles
    {BF, 5, 37, 17, 13, 0, true, true, RL, HS, 5, 2000, false, EX1, 0, true},    // NHWC, K >= 2
    {F16, 5, 37, 17, 13, 0, false, false, RL, SG, 3, 1500, false, EX1, 0, false},
    {F64, 3, 37, 7, 7, 0, false, true, RL, HS, 3, 600, false, EX1, 0, true},
    // ECA: taps across the chunk edges, zero padding at the ends
    {F32, 5, 37, 17, 13, 0, true, true, RL, SG, 5, 4000, false, ECA, 3, false},  // NHWC, K = 10
    {F32, 3, 37, 17, 13, 0, false, false, RL, HS, 3, 4000, false, ECA, 5, true},
    {BF, 5, 37, 17, 13, 0, false, true, RL, SG, 5, 2000, false, ECA, 5, true},
    {F16, 5, 37, 7, 7, 0, true, true, RL, HS, 3, 1000, false, ECA, 3, false},
    {F64, 3, 37, 7, 7, 0, true, true, RL, SG, 5, 3000, false, ECA, 5, false},    // NHWC, K = 5
    {F32, 3, 1, 5, 5, 0, false, true, RL, SG, 2, 0, false, ECA, 5, false},       // C 1 < k/2: taps all padding but one
    {BF, 2, 2, 5, 5, 0, true, true, RL, HS, 2, 0, false, ECA, 7, true},         // C 2 < k/2 = 3
    // Circular ECA: k/2 == C wraps whole rows
    {F32, 5, 37, 17, 13, 0, false, true, RL, SG, 5, 8000, false, ECC, 5, false},
    {BF, 5, 37, 17, 13, 0, true, false, RL, HS, 5, 2000, false, ECC, 3, true},
    {F64, 3, 37, 7, 7, 0, false, true, RL, SG, 3, 600, false, ECC, 5, true},
    {F32, 2, 2, 5, 5, 0, true, true, RL, SG, 2, 0, false, ECC, 5, false},        // k/2 == C == 2
    {F64, 2, 1, 5, 5, 0, false, true, RL, HS, 2, 0, false, ECC, 3, true},        // k/2 == C == 1
    {F16, 3, 3, 7, 7, 0, false, true, RL, SG, 2, 0, false, ECC, 7, false},       // k/2 == C == 3
    // The residual gate with two FCs
    {F32, 5, 37, 17, 13, 4, true, true, SL, HS, 5, 4000, false, EX2, 0, true},
    {BF, 5, 37, 17, 13, 4, false, true, RL, SG, 5, 2000, false, EX2, 0, true},
    {F64, 2, 1, 5, 5, 1, false, true, SL, SG, 2, 0, false, EX2, 0, true},
    // NaN and Inf masks with the new variants (a NaN mean reaches every channel through w1)
    {F32, 4, 37, 7, 7, 0, false, true, RL, SG, 3, 1000, true, EX1, 0, true},
    {BF, 4, 37, 17, 13, 0, true, true, RL, HS, 5, 2000, true, ECA, 5, false},
    {F64, 4, 24, 5, 5, 0, true, false, RL, SG, 3, 600, true, ECC, 3, true},
    // The one-pass budget (80 KB of staged tile): a 140x140 fp32 plane fits
    // exactly; a 150x150 plane does not (the one-pass request takes the
    // two-pass path). NHWC 32 channels x 30x30 (115 KB) is split into row
    // parts of 29 KB (forward; 15 KB backward), which fit.
    {F32, 1, 2, 140, 140, 2, false, true, RL, SG, 2, 0, false, EX2, 0, true},
    {F32, 2, 3, 150, 150, 2, false, true, SL, HS, 3, 0},
    {F32, 1, 32, 30, 30, 4, true, true, RL, SG, 2, 0, false, EX2, 0, false, true},
    // NHWC rows split into parts (summed in part order before the excitation):
    // every dtype and excitation, NaN/Inf, the residual gate, parts of unequal
    // length, one-pass tiles of a part's rows
    {F32, 2, 20, 16, 16, 4, true, true, RL, SG, 5, 1024, false, EX2, 0, false, true},  // P = 4 / 8
    {BF, 3, 16, 12, 12, 4, true, true, SL, HS, 4, 512, true, EX2, 0, true, true},    // P = 5 / 9, NaN/Inf
    {F16, 2, 24, 10, 10, 0, true, true, RL, SG, 4, 400, false, ECA, 3, false, true},  // P = 4 / 8
    {F64, 2, 12, 8, 8, 0, true, true, SL, SG, 4, 256, false, EX1, 0, true, true},     // P = 4 / 8
    {F32, 2, 10, 7, 9, 0, true, false, RL, HS, 3, 300, true, ECC, 3, false, true},    // C*4 not 16-byte rows
    // hidden 1100: the hidden activations in the workspace (8.8 KB, past shared
    // memory), one slot per unit; K >= 2 units of a sample run at once
    {F32, 2, 37, 7, 7, 1100, true, true, SL, SG, 4, 1000},
    // a one-pass tile of exactly 8 KB (2 planes of 32x32): the staging's room for
    // a misaligned span is what takes the request to the next 8 KB step
    {F32, 2, 2, 32, 32, 2, false, true, RL, SG, 2, 0},
  };
}

inline std::vector<Case> full_cases() {
  using namespace shorthands;
  // Wider sets for runs by hand: every dtype, and shapes past the shared-memory staging.
  std::vector<Case> full;
  for (DT dt : {F32, BF, F16, F64}) {
    for (Case k : std::vector<Case>{
             {F32, 1, 3, 1, 1, 1, false, true, RL, SG, 3, 0},
             {F32, 5, 37, 7, 7, 4, false, true, SL, HS, 3, 0},
             {F32, 5, 37, 7, 7, 4, true, false, RL, SG, 2, 600},
             {F32, 2, 3, 17, 13, 1, true, true, SL, SG, 4, 0},
             {F32, 2, 3, 17, 13, 1, false, false, RL, HS, 1, 0},
             {F32, 3, 64, 4, 4, 16, true, true, RL, SG, 3, 256},
             {F32, 2, 1, 5, 5, 1, false, true, SL, SG, 2, 0},
             {F32, 3, 40, 1, 1, 10, true, true, RL, HS, 2, 0},
             {F32, 2, 5, 56, 56, 2, false, true, SL, SG, 3, 0},
             {F32, 2, 24, 20, 20, 3, true, false, SL, HS, 3, 0},
             {F32, 7, 100, 9, 9, 8, false, true, SL, SG, 6, 2000},
             {F32, 7, 100, 9, 9, 8, true, true, RL, HS, 6, 1000},
         }) { k.dt = dt; full.push_back(k); }
  }
  return full;
}

inline std::vector<Case> big_cases() {
  using namespace shorthands;
  return {
    {F32, 2, 2100, 1, 2, 3, false, true, RL, SG, 3, 0},      // C beyond one chunk's staging
    {F32, 2, 1100, 2, 1, 1100, true, true, SL, SG, 3, 0},    // hidden beyond shared memory
    {F32, 1, 2, 112, 112, 1, false, true, RL, SG, 2, 0},     // G = 256
    {BF, 2, 2100, 1, 2, 3, false, true, RL, SG, 3, 0},
    {BF, 2, 1100, 2, 1, 1100, true, true, SL, SG, 3, 0},
    {F32, 2, 1100, 2, 1, 0, true, true, RL, SG, 3, 0, false, EX1, 0, true},    // one FC, C past a chunk
    {BF, 2, 2100, 1, 2, 0, false, true, RL, HS, 3, 0, false, ECA, 5, false},   // ECA over 5 chunks
    {F64, 2, 2100, 1, 2, 0, false, true, RL, SG, 3, 0, false, ECC, 7, true},
    // The library's unit bytes: NHWC rows split (bf16 56x56: 13 parts forward, 25 backward;
    // fp32 C 70: 280-byte rows, not 16-byte aligned)
    {BF, 1, 64, 56, 56, 4, true, true, RL, SG, 3, 0, false, EX2, 0, false, true},
    {F32, 2, 70, 30, 30, 5, true, true, SL, HS, 3, 0, false, EX2, 0, true, true},
  };
}

// Three host threads (streams) at once on the emulator, plus a one-pass one.
inline std::vector<Case> concurrent_cases() {
  using namespace shorthands;
  return {
      {F32, 3, 37, 17, 13, 4, false, true, RL, SG, 2, 1500}, // K = 3 NCHW
      {F32, 2, 24, 8, 8, 3, true, true, SL, HS, 2, 200},     // K = 6 NHWC, rows split in 6 parts
      {F32, 2, 40, 16, 16, 5, false, false, SL, SG, 2, 600}, // K = 3 (cluster, clusters of 2)
      {F32, 1, 24, 5, 5, 3, true, true, SL, HS, 2, 2000},    // K = 2 NHWC (one-pass, both slots)
  };
}

// The set named `which` into out, or false.
inline bool case_set(const std::string& which, std::vector<Case>& out) {
  if (which == "quick") out = quick_cases();
  else if (which == "full") out = full_cases();
  else if (which == "big") out = big_cases();
  else return false;
  return true;
}

}  // namespace se_cases
