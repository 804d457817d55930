// stats.cu: the manifest's feature statistics as per-block partial moments, one thread per block.
//
//   pf_moments(n_blocks, block_start, block_end, feats, valid, swing, counts, moments)
//     block_start/end : [B] i64       blocks of bars; a block never crosses a series segment
//     feats           : [n, 10] float features; valid [n] u8; swing [n] i8 (1 high, 2 low)
//     counts          : [B, 3] i64    valid bars, swing highs, swing lows (over all bars)
//     moments         : [B, 10, 6] double, per feature over the block's valid bars:
//                       shift (the first valid value), sum of (x - shift), sum of (x - shift)^2,
//                       min, max, count of x != 0; all 0 when the block has no valid bar.
//
// Shifting by a value of the block keeps the variance exact for constant features and free of
// cancellation otherwise; gpu_features/store/stats.py combines blocks into series, symbols and
// the whole store (Chan et al.), and gpu_features/reference.py block_moments is the same loop in
// numpy. Sequential sums in bar order, no FMA (--fmad=false / -ffp-contract=off): the host and GPU
// builds give the same bits for the same blocks.
#include "state.cuh"

#define PF_MOMENTS 6

PF_KERNEL void pf_moments(pf_i64 n_blocks, const pf_i64* __restrict__ block_start,
                          const pf_i64* __restrict__ block_end, const float* __restrict__ feats,
                          const unsigned char* __restrict__ valid, const signed char* __restrict__ swing,
                          pf_i64* __restrict__ counts, double* __restrict__ moments) {
  const pf_i64 k = pf_thread_index();
  if (k >= n_blocks) return;
  double shift[PF_N_FEATURES], s1[PF_N_FEATURES], s2[PF_N_FEATURES], lo[PF_N_FEATURES],
      hi[PF_N_FEATURES], nz[PF_N_FEATURES];
PF_UNROLL
  for (int f = 0; f < PF_N_FEATURES; ++f) shift[f] = s1[f] = s2[f] = lo[f] = hi[f] = nz[f] = 0.0;
  pf_i64 n_valid = 0, highs = 0, lows = 0;
  const pf_i64 a = block_start[k], b = block_end[k];
  pf_i64 first = a;
  while (first < b && !valid[first]) ++first;
  if (first < b) {
PF_UNROLL
    for (int f = 0; f < PF_N_FEATURES; ++f) shift[f] = lo[f] = hi[f] = (double)feats[first * PF_N_FEATURES + f];
  }
  // Branch-free over bars (an invalid bar adds exact zeros), so the feature loop vectorizes.
  for (pf_i64 j = first; j < b; ++j) {
    const bool w = valid[j] != 0;
    const float* row = feats + j * PF_N_FEATURES;
    // An invalid bar reads as the shift: d = 0 adds exact zeros, min/max see a value they hold.
PF_UNROLL
    for (int f = 0; f < PF_N_FEATURES; ++f) {
      const double x = w ? (double)row[f] : shift[f];
      const double d = x - shift[f];
      s1[f] = s1[f] + d;
      s2[f] = s2[f] + d * d;
      lo[f] = x < lo[f] ? x : lo[f];
      hi[f] = x > hi[f] ? x : hi[f];
      nz[f] = nz[f] + (w && x != 0.0 ? 1.0 : 0.0);
    }
    n_valid += w;
  }
  for (pf_i64 j = a; j < b; ++j) {
    const signed char code = swing[j];
    highs += code == 1;
    lows += code == 2;
  }
  counts[k * 3 + 0] = n_valid;
  counts[k * 3 + 1] = highs;
  counts[k * 3 + 2] = lows;
  double* out = moments + k * PF_N_FEATURES * PF_MOMENTS;
PF_UNROLL
  for (int f = 0; f < PF_N_FEATURES; ++f) {
    out[f * PF_MOMENTS + 0] = shift[f];
    out[f * PF_MOMENTS + 1] = s1[f];
    out[f * PF_MOMENTS + 2] = s2[f];
    out[f * PF_MOMENTS + 3] = lo[f];
    out[f * PF_MOMENTS + 4] = hi[f];
    out[f * PF_MOMENTS + 5] = nz[f];
  }
}
