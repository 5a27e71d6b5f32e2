// The shape heuristics, each with its reason. Everything here is a function
// of the problem's shape (C, HW, hidden, dtype, layout, direction) and never
// of N, the grid, the device or the pointers: the geometry fixes every
// summation order (se_reduce.cuh), so that choice is what makes the results
// deterministic and batch-invariant. Only the grid sizes and the path (which
// give the same bits whatever they are) may depend on the device.
#pragma once

#include <cstdint>

#include "se_block.h"
#include "se_load.cuh"

namespace se_fused {
namespace cuda_kernels {

// A work unit is (sample n, channel chunk k): the squeeze, the chunk's share
// of the gate MLP and the scale of those channels.
//
// kUnitBytes: bytes per unit: x (forward) or dy and x (backward), plus the
// unit's weight slice.
// Tens of KB: a block keeps 4 x 16-byte loads per thread in flight (16 KB
// per 256-thread block, 48-64 KB per SM at 3-4 blocks per SM), and a unit
// of two to four such rounds amortises the unit's fixed cost (two
// __syncthreads rounds, the chunk's MLP rows) while leaving enough units per
// sample to fill the GPU at small N.
constexpr int64_t kUnitBytes = 32 * 1024;
// Channels per chunk at most: the chunk's pooled means / gate / dp live in
// shared memory (2 x 512 acc values, 8 KB for double).
constexpr int64_t kMaxChunk = 512;
// The hidden activations (or dz1) live in shared memory up to this many
// bytes; past it each unit gets a slice of the workspace instead.
constexpr int64_t kHiddenBytes = 8192;
// Column-reduction partials (kThreads x V acc values: 8 KB for every T).
constexpr int64_t kColBytes = 8192;
// NHWC: a chunk spans at least this many bytes of a pixel's row, so that each
// pixel's slice is whole 32-byte sectors (ideally whole 128-byte lines):
// narrower column chunks would waste DRAM bandwidth on partial sectors.
constexpr int64_t kMinRowBytes = 128;
// NHWC: when a unit spanning every row would move more than twice the unit
// bytes (kMinRowBytes chunks of a 56x56 plane: 400 KB, four units per
// 256-channel sample, so 1x256x56x56 would run on four blocks), its rows are
// split into parts of about the unit bytes each. A part's squeeze writes its
// partial sums; a summing step adds them in part order 0..P-1 (fixed by the
// shape) before the excitation (se_forward.cuh, se_backward.cuh). NCHW
// units are whole planes: a plane of 80 KB is 144x144 float, past the SE
// stages of the common networks, and a unit of one plane already fills the
// block.
constexpr int64_t kSplitFactor = 2;
// Weight gradients: 64 x 64 outputs per block, 16 samples staged per step.
constexpr int kTile = 64;
constexpr int kTileN = 16;
// Work units (N * K * P) and weight-gradient blocks per call: the two-pass
// kernels run one per block (grid = units, gridDim.x <= 2^31 - 1) and index
// them in 32 bits (se_tile.cuh unit_of); the staged kernels loop over
// rounds. Past this (terabytes of x) the launch functions return
// cudaErrorInvalidValue.
constexpr int64_t kMaxUnits = (int64_t{1} << 31) - 1;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }
inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

// Smallest power of two >= v, for v in [1, cap]; cap when v > cap.
inline int pow2_at_least(int64_t v, int cap) {
  int p = 1;
  while (p < v && p < cap) p *= 2;
  return p;
}

// The geometry of one call: chunking and the lane/column widths of every
// reduction (all shape-only, see above).
struct Geometry {
  // Host-side: see make_geometry. Device code reads it from the kernel's
  // argument (constant bank).
  int64_t chunk = 1;   // channels per unit (the last chunk of a sample may be shorter)
  int64_t chunks = 1;  // K: channel chunks per sample
  int64_t parts = 1;   // P: row parts per chunk (NHWC only, else 1)
  int64_t part_rows = 1;  // rows (pixels) per part, the last part may be shorter (NCHW: HW)
  int64_t units = 0;   // N * K * P: units (n, k, p) of the squeeze and the scale
  int G = 1;    // NCHW squeeze/scale: lanes per channel plane
  int CW = 1;   // NHWC squeeze/scale: vector-columns (of V channels) per round
  int G1 = 1;   // forward phase 1: lanes per partial-z1 row (length chunk)
  int G2 = 1;   // forward phase 2: lanes per z2 row (length hidden; one FC: C)
  int CWa = 1;  // backward phase 1: columns of the partial da (hidden columns)
  int CWp = 1;  // backward phase 2: columns of dp (chunk columns)
  bool hid_global = false;  // hidden activations / dz1 in the workspace (too long for smem)
  double hw_d = 1, inv_hw_d = 1;  // HW and 1 / HW (rounded) in double ...
  float hw_f = 1, inv_hw_f = 1;   // ... and in float, for div_by (se_load.cuh)
  int64_t tiles1_cols = 0, tiles2_cols = 0, tiles1 = 0, tiles2 = 0;  // weight-gradient tiles
  int64_t wgrad_blocks = 0;  // dw1 tiles + dw2 tiles + bias blocks (ECA: k + 1)
};

// NCHW: ~4 chunks of 16 bytes per lane, up to the whole block per plane (a
// 56x56 bf16 plane: 128 lanes; 7x7 fp32: 4 lanes, 64 planes per round).
template <typename T>
int nchw_group(int64_t HW) {
  return pow2_at_least(ceil_div(ceil_div(HW, Vec<T>::V), 4), kThreads);
}
// NHWC: ~4 rows per thread up to 32 row-strided threads; the rest columns.
template <typename T>
int nhwc_columns(int64_t chunk, int64_t HW) {
  const int rows = pow2_at_least(ceil_div(HW, 4), 32);
  return pow2_at_least(ceil_div(chunk, Vec<T>::V), kThreads / rows);
}
// MLP row dot products: a sub-warp group per row, ~4 16-byte chunks per lane.
template <typename T>
int dot_group(int64_t len) {
  return pow2_at_least(ceil_div(ceil_div(len, Vec<T>::V), 4), 32);
}
// MLP column dot products: up to a warp of vector-columns.
template <typename T>
int dot_columns(int64_t ncols) {
  return pow2_at_least(ceil_div(ncols, Vec<T>::V), 32);
}

template <typename T>
Geometry make_geometry(const SEForwardParams& p, bool backward) {
  using A = acc_t<T>;
  constexpr int V = Vec<T>::V;
  Geometry g;
  const int64_t C = p.C, HW = p.HW;
  // Bytes a unit moves per channel: its planes of x (and dy), plus the
  // weights it reads for that channel in each phase (a w1 column, a w2 row):
  // at 7x7 the weights outweigh x, and counting them keeps a unit's L2 reads
  // from making it the long pole at batch 1.
  // (One FC: a row and a column of w1 [C, C]; ECA: k weights in all.)
  const bool two_fc = p.excitation == Excitation::TwoFC;
  const bool one_fc = p.excitation == Excitation::OneFC;
  const int64_t weights = two_fc ? p.hidden : (one_fc ? C : 0);
  const int64_t per_channel =
      (HW * (backward ? 2 : 1) + weights) * static_cast<int64_t>(sizeof(T));
  const bool test_units = p.unit_bytes > 0;
  int64_t chunk = ceil_div(test_units ? p.unit_bytes : kUnitBytes, per_channel);
  g.G = nchw_group<T>(HW);
  if (p.channels_last) {
    // Whole 16-byte columns, at least kMinRowBytes of each pixel's row.
    chunk = round_up(chunk, V);
    if (!test_units) chunk = max64(chunk, kMinRowBytes / static_cast<int64_t>(sizeof(T)));
  } else {
    // Whole rounds of the plane groups (kThreads / G planes at once).
    chunk = round_up(chunk, kThreads / g.G);
  }
  chunk = min64(min64(chunk, kMaxChunk), C);
  g.chunk = chunk;
  g.chunks = ceil_div(C, chunk);
  g.part_rows = HW;
  if (p.channels_last) {
    const int64_t target = test_units ? p.unit_bytes : kUnitBytes;
    const int64_t tile = chunk * HW * (backward ? 2 : 1) * static_cast<int64_t>(sizeof(T));
    if (tile > kSplitFactor * target) {
      g.part_rows = ceil_div(HW, ceil_div(tile, target));
      g.parts = ceil_div(HW, g.part_rows);
    }
  }
  g.units = p.N * g.chunks * g.parts;
  g.CW = nhwc_columns<T>(chunk, g.part_rows);
  g.G1 = dot_group<T>(chunk);
  g.G2 = dot_group<T>(one_fc ? C : p.hidden);  // the z2 rows: w2's (two FCs) or w1's (one FC)
  g.CWa = dot_columns<T>(p.hidden);
  g.CWp = dot_columns<T>(chunk);
  g.hid_global = p.hidden * static_cast<int64_t>(sizeof(A)) > kHiddenBytes;
  g.hw_d = static_cast<double>(HW);
  g.inv_hw_d = 1.0 / g.hw_d;
  g.hw_f = static_cast<float>(HW);
  g.inv_hw_f = 1.0f / g.hw_f;
  if (backward) {
    // w1 [rows1, C] (rows1: hidden, or C for one FC), w2 [C, hidden] (two
    // FCs), their biases; ECA: one block per dw1 tap and one for db1.
    const int64_t rows1 = one_fc ? C : p.hidden, rows2 = two_fc ? C : 0;
    g.tiles1_cols = ceil_div(C, kTile);
    g.tiles2_cols = ceil_div(p.hidden, kTile);
    g.tiles1 = ceil_div(rows1, kTile) * g.tiles1_cols;
    g.tiles2 = ceil_div(rows2, kTile) * g.tiles2_cols;
    g.wgrad_blocks = p.kernel_size > 0 ? p.kernel_size + 1
                                       : g.tiles1 + g.tiles2 + ceil_div(rows1 + rows2, kThreads);
  }
  return g;
}

template <typename A>
__host__ __device__ __forceinline__ A geo_hw(const Geometry& g);
template <>
__host__ __device__ __forceinline__ double geo_hw<double>(const Geometry& g) { return g.hw_d; }
template <>
__host__ __device__ __forceinline__ float geo_hw<float>(const Geometry& g) { return g.hw_f; }
template <typename A>
__host__ __device__ __forceinline__ A geo_inv_hw(const Geometry& g);
template <>
__host__ __device__ __forceinline__ double geo_inv_hw<double>(const Geometry& g) { return g.inv_hw_d; }
template <>
__host__ __device__ __forceinline__ float geo_inv_hw<float>(const Geometry& g) { return g.inv_hw_f; }

// OnePass (se_onepass.cuh): the unit's tile, x (forward) or dy (backward;
// x is needed by the squeeze alone and is read from global memory once), is
// staged in dynamic shared memory at the start of the squeeze phase and
// scaled from there after the grid barrier. It applies when
//   - the tile fits kOnePassSmemBytes: 80 KB is the largest tile with which
//     two blocks still fit an H100/H200 SM (228 KB: 2 x (80 KB + 24.6 KB
//     static + 1 KB reserved) = 211 KB), where the staged kernels' 108-169
//     registers allow 1-2 blocks per SM anyway; an A100 (164 KB) holds one.
//     With kUnitBytes units (NHWC rows split into parts of about that) the
//     tile is mostly 8-40 KB; the budget only turns away NCHW planes over
//     80 KB (e.g. 150x150 fp32), which are never split;
//   - every unit of a sample is resident at once (one unit per block: the
//     tile cannot be handed to another unit): chunks x parts <= occupancy x
//     SMs at that shared memory (se_resident_blocks), and the driver accepts
//     the cooperative launch. A call of more samples than that runs in rounds
//     of whole samples, one grid barrier each (two with row parts): x is
//     still read once;
// else the two-pass kernels run. The
// tile's bytes depend on the shape alone; which path runs may depend on the
// device, and every path gives the same bits.
constexpr int64_t kOnePassSmemBytes = 80 * 1024;
// Dynamic shared memory is requested in steps of this (se_sync.h caches the
// occupancy per step).
constexpr int64_t kOnePassSmemStep = 8 * 1024;

// Bytes of dynamic shared memory a unit's staged tile takes (the call's
// widest chunk): NCHW the chunk's planes as one span, kept at its global
// misalignment (+ up to a 16-byte pack); NHWC the part's rows of the chunk's
// channels rounded to whole 16-byte packs.
template <typename T>
int64_t onepass_smem_bytes(const SEForwardParams& p, const Geometry& g) {
  constexpr int64_t V = Vec<T>::V, B = static_cast<int64_t>(sizeof(T));
  const int64_t elems = p.channels_last ? g.part_rows * round_up(g.chunk, V) : round_up(g.chunk * p.HW + V - 1, V);
  return round_up(elems * B, kOnePassSmemStep);
}
// A sample's units: its chunks x row parts (units are sample-major, se_tile.cuh
// unit_of, so the units of whole samples are one contiguous range).
inline int64_t units_per_sample(const Geometry& g) { return g.chunks * g.parts; }
inline bool onepass_applies(int64_t smem_bytes, const Geometry& g, int64_t resident) {
  return smem_bytes <= kOnePassSmemBytes && units_per_sample(g) <= resident;
}
// The one-pass grid: the units of as many whole samples as the resident blocks
// hold (all of them when the call fits one round). The kernels run rounds of
// that many samples, a grid barrier each (se_forward.cuh).
inline int64_t onepass_grid(const SEForwardParams& p, const Geometry& g, int64_t resident) {
  const int64_t per_round = min64(resident / units_per_sample(g), p.N);
  return per_round * units_per_sample(g);
}

// The staged kernels (se_onepass.cuh): OnePass and Cluster run one kernel
// shape, rounds in which a block stages the tiles of some units in slots of
// its dynamic shared memory, squeezes them, meets the round's other blocks at
// a barrier, and scales from the slots. The plan says which units a block
// takes; it moves no sum (every unit runs the per-unit code of the other
// paths), so it may depend on the device.
//   OnePass: slots 1, cluster 0: the barrier is grid-wide (a cooperative
//     launch), a round is as many whole samples as the grid's blocks hold.
//   Cluster: one sample per cluster of `cluster` blocks (its units r, r +
//     cluster, ... on block rank r, `slots` of them at most), the barrier the
//     cluster's: no block waits on another cluster.
struct StagedPlan {
  int64_t slots = 1;       // units a block takes per round
  int64_t staged = 1;      // of which the first `staged` are staged (the rest: squeezed and scaled from global memory)
  int64_t slot_bytes = 0;  // bytes per staged slot (16-byte multiple); the launch's dynamic smem is staged x this
  int64_t cluster = 0;     // Cluster: blocks per cluster; 0: OnePass
  int64_t weight_bytes = 0;  // the unit's weight slice staged per phase after the slots (cluster_plan), else 0
  int64_t samples = 1;       // Cluster: whole samples per cluster round (cluster_plan); slots is per sample
  int64_t sum_bytes = 0;     // Cluster with row parts: the part sums the block adds, after the slice (part_sum_bytes)
  int64_t smem() const { return staged * slot_bytes + weight_bytes + sum_bytes; }
};

// Cluster (SEPath::Cluster, sm_90+): a sample's units spread over a cluster
// of min(units per sample, the device's largest cluster) blocks, 16 at most
// (the non-portable limit of H100/H200), each staging its units' tiles at
// once (cp.async: the block keeps them all in flight). A slot is the one-pass
// tile rounded to 16 bytes (not to kOnePassSmemStep: the slots are packed).
// kClusterSmemBytes: the slots of a block at most: 200 KB leaves room for the
// 20-25 KB of static shared memory under the 227 KB per block of an H100/H200
// (one block per SM; the cluster's blocks are resident together by
// construction). A block whose units' tiles pass the budget by one unit
// stages the others and runs that one from global memory as the two-pass
// kernels do (its x read twice, the second time mostly from L2); past one
// unit per block, TwoPass. 1x256x56x56 bf16 NCHW: 43 units of 37.6 KB, 16
// blocks of 3 slots; 64x256x56x56 fp32 NCHW: 86 units of 37.6 KB, 16 blocks
// of 6, 5 staged (184 KB: x read 1.07 times); fp32 NHWC 56x56: 104 units of
// 30 KB, 7 a block, 6 staged; 96x112x112 fp32 (96 units of 49 KB, 6 a block,
// 4 fit): TwoPass.
constexpr int64_t kMaxCluster = 16;
constexpr int64_t kClusterSmemBytes = 200 * 1024;

template <typename T>
int64_t cluster_slot_bytes(const SEForwardParams& p, const Geometry& g) {
  constexpr int64_t V = Vec<T>::V, B = static_cast<int64_t>(sizeof(T));
  const int64_t elems = p.channels_last ? g.part_rows * round_up(g.chunk, V) : round_up(g.chunk * p.HW + V - 1, V);
  return elems * B;  // V * B == 16: a 16-byte multiple
}
// A unit's weight slice, staged per phase (stage_weights): the MLP reads a
// unit's w1 columns (hidden rows of `chunk` values) and its w2 rows (chunk x
// hidden values), one per phase, once per sample, and from global memory a
// block keeps only its lanes' loads in flight (8 KB: at 7x7 with wide MLPs a
// unit's 32-64 KB of weights took 4-8 dependent L2 round trips per phase).
// Staged, the slice is in flight at once (cp.async), behind the squeeze, the
// summing step's adds or the partials' sum. Bytes: the
// larger phase, w1's rows at onepass_ld (16-byte aligned) or w2's rows as one
// span at its global misalignment.
template <typename T>
int64_t weight_slice_bytes(const SEForwardParams& p, const Geometry& g) {
  constexpr int64_t V = Vec<T>::V, B = static_cast<int64_t>(sizeof(T));
  const int64_t w1 = p.hidden * round_up(g.chunk, V), w2 = round_up(g.chunk * p.hidden + V - 1, V);
  return max64(w1, w2) * B;
}
// Row parts (NHWC, parts > 1) in a cluster: each part's channel sums go
// into the shared memory of the block that adds the chunk's parts (the
// summing step's block of chunk k: rank k % cluster, its (k / cluster)-th
// chunk; se_tile.cuh put_part_sums), not through the workspace in L2. Bytes:
// P sums of `chunk` accumulators for each of the block's chunks of a round
// (one sample a round). 256x256x56x56 bf16 NHWC: 13 x 64 x 4 = 3.3 KB.
template <typename T>
int64_t part_sum_bytes(const Geometry& g, int64_t cluster) {
  if (g.parts <= 1) return 0;
  const int64_t b = ceil_div(g.chunks, cluster) * g.parts * g.chunk * static_cast<int64_t>(sizeof(acc_t<T>));
  return round_up(b, 16);
}
// The cluster plan for clusters of at most max_cluster blocks (the device's
// largest, kMaxCluster at most); slots 0 when a sample does not fit.
// stage_weights: the weight slice is staged (two FCs; with rows split, by the
// summing step for its MLP rows and by each part for phase 2) where it fits
// beside the slots without taking one: staging x keeps the priority.
// samples > 1 (the forward, rows not split; cluster_fit): a round takes that many whole
// samples, a block the same chunks of each, one after another
// (se_onepass.cuh staged_rounds), so that a chunk's staged weight slice serves
// every sample of the round: read from L2 once per round, not per sample (at
// 7x7 a sample's weights are 2-5x its x). Only with the weights staged and
// every slot staged; else slots 0 (the caller takes fewer samples).
template <typename T>
StagedPlan cluster_plan(const SEForwardParams& p, const Geometry& g, int64_t max_cluster,
                        bool stage_weights = false, int64_t samples = 1) {
  StagedPlan sp;
  const int64_t ups = units_per_sample(g);
  sp.cluster = max64(1, min64(ups, min64(max_cluster, kMaxCluster)));
  sp.slots = ceil_div(ups, sp.cluster);
  sp.samples = max64(1, samples);
  sp.slot_bytes = cluster_slot_bytes<T>(p, g);
  sp.sum_bytes = part_sum_bytes<T>(g, sp.cluster);
  const int64_t budget = kClusterSmemBytes - sp.sum_bytes;  // the part sums first: the exchange needs them
  const int64_t total = sp.slots * sp.samples;  // a block's units per round
  const int64_t unstaged = sp.samples == 1 && sp.slots > p.cluster_unstaged ? p.cluster_unstaged : 0;  // tests
  sp.staged = min64(total - unstaged, budget / sp.slot_bytes);
  if (max_cluster < 1 || sp.staged < max64(1, total - 1)) sp.slots = sp.staged = 0;
  const int64_t wb = weight_slice_bytes<T>(p, g);
  if (stage_weights && sp.slots > 0 && p.excitation == Excitation::TwoFC &&
      sp.staged * sp.slot_bytes + wb <= budget)
    sp.weight_bytes = wb;
  if (sp.samples > 1 && (sp.weight_bytes == 0 || sp.staged < total || g.parts > 1)) sp.slots = sp.staged = 0;
  return sp;
}
// Samples per cluster round to try first (cluster_fit takes the most that fits
// and still gives the device's clusters work: ceil(N / samples) clusters at
// least as many as fit at once).
constexpr int64_t kMaxClusterSamples = 8;

// Which path runs. Every path gives the same bits (same geometry, same
// per-unit code), so this is a speed choice only.
//
//   TwoPass (default, always safe): launch 1 squeezes and forms each chunk's
//   partial z1 (backward: partial da); launch 2 sums the partials in chunk
//   order, finishes the MLP rows of its own channels and scales. Where NHWC
//   rows are split (parts > 1), launch 1 writes each part's sums and a
//   summing launch between them adds them in part order and forms the
//   partials (the staged kernels: one more barrier). No block
//   waits on another, on any GPU, under MPS, beside NCCL or other streams.
//   x (dy) is read twice; the second read hits L2 when the batch fits (about
//   half of the 60 MB L2 of an H200, the rest being y's write-back).
//
//   OnePass: the staged kernel under a cooperative launch, x (dy) kept in
//   shared memory across the grid barrier (above): the forward moves 2N bytes
//   instead of 3N (x read once, y written), the backward 3N instead of 4N+
//   (x and dy read once, dx written). Chosen only on request; where it does
//   not apply, TwoPass.
//
//   Cluster (sm_90+): the staged kernel with one sample per thread-block
//   cluster and the cluster's barrier (above): x (dy) read once, one launch
//   (backward: two, the weight gradients apart, but one at batch 1), and no
//   block waits on anything but its own cluster, co-scheduled by the
//   hardware. Chosen only on request until a GPU run shows it faster; where
//   it does not apply (before sm_90, a sample over the cluster's shared
//   memory, the launch refused), TwoPass.
//
// (A cooperative path, the two-pass phases in one launch with grid barriers,
// was removed: by benchmarks/gpu_model.py no shape needs it once the cluster
// and one-pass paths exist; docs/cuda.md.)
//
// Auto stays TwoPass until a GPU run (benchmarks/gpu_check.sh) confirms that
// a waiting path is correct and faster there (none has run on a GPU yet). The
// rule the model predicts (docs/cuda.md): Cluster where it applies at large
// batches (sm_90+: x read once with no grid barrier); OnePass at batch 1 (one
// launch, one unit per block: more SMs at work than a cluster's 16; the only
// one-launch path before sm_90); TwoPass otherwise (7x7 maps, where the
// staged paths read the weights once per sample too and are no faster).
inline SEPath choose_path(SEPath requested) {
  switch (requested) {
    case SEPath::OnePass:
    case SEPath::Cluster:
      return requested;
    default:
      return SEPath::TwoPass;
  }
}

}  // namespace cuda_kernels
}  // namespace se_fused
