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
// builds give the same bits for the same blocks. The GPU runs the scalar loop; the host build runs the
// same operations on pairs of features in SSE2 vectors (pf_feature_moments_pairs), so its 60 running
// values stay in registers instead of being reloaded from the stack every bar (4x faster).
#include "state.cuh"

#define PF_MOMENTS 6

// The ten features' moments over bars first .. b-1 (first: the block's first valid bar, or b) into
// out[10][6]; returns the number of valid bars. Scalar: the GPU's loop, one CUDA thread per block.
PF_DEVICE pf_i64 pf_feature_moments(pf_i64 first, pf_i64 b, const float* __restrict__ feats,
                                    const unsigned char* __restrict__ valid, double* __restrict__ out) {
  double shift[PF_N_FEATURES], s1[PF_N_FEATURES], s2[PF_N_FEATURES], lo[PF_N_FEATURES],
      hi[PF_N_FEATURES], nz[PF_N_FEATURES];
PF_UNROLL
  for (int f = 0; f < PF_N_FEATURES; ++f) shift[f] = s1[f] = s2[f] = lo[f] = hi[f] = nz[f] = 0.0;
  pf_i64 n_valid = 0;
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
PF_UNROLL
  for (int f = 0; f < PF_N_FEATURES; ++f) {
    out[f * PF_MOMENTS + 0] = shift[f];
    out[f * PF_MOMENTS + 1] = s1[f];
    out[f * PF_MOMENTS + 2] = s2[f];
    out[f * PF_MOMENTS + 3] = lo[f];
    out[f * PF_MOMENTS + 4] = hi[f];
    out[f * PF_MOMENTS + 5] = nz[f];
  }
  return n_valid;
}

#ifndef PF_GPU
// Host build: pf_feature_moments with features 2p and 2p+1 in one SSE2 vector (GCC/Clang vector
// extensions; every x86-64 CPU has SSE2). Each lane does the scalar code's double operations in the same
// bar order, and the selects are exact bit selects, so the results are the same bits.
typedef double pf_v2d __attribute__((vector_size(16)));
typedef long long pf_v2i __attribute__((vector_size(16)));
#define PF_PAIRS (PF_N_FEATURES / 2)

// mask ? a : b lane by lane (a vector comparison gives lanes of all ones or all zeros).
PF_DEVICE pf_v2d pf_select(pf_v2i mask, pf_v2d a, pf_v2d b) {
  return (pf_v2d)(((pf_v2i)a & mask) | ((pf_v2i)b & ~mask));
}

PF_DEVICE pf_v2d pf_pair(const float* row, int p) {
  const pf_v2d v = {(double)row[2 * p], (double)row[2 * p + 1]};
  return v;
}

PF_DEVICE pf_i64 pf_feature_moments_pairs(pf_i64 first, pf_i64 b, const float* __restrict__ feats,
                                          const unsigned char* __restrict__ valid, double* __restrict__ out) {
  const pf_v2d zero = {0.0, 0.0}, one = {1.0, 1.0};
  pf_v2d shift[PF_PAIRS], s1[PF_PAIRS], s2[PF_PAIRS], lo[PF_PAIRS], hi[PF_PAIRS], nz[PF_PAIRS];
  pf_i64 n_valid = 0;
PF_UNROLL
  for (int p = 0; p < PF_PAIRS; ++p) {
    shift[p] = lo[p] = hi[p] = first < b ? pf_pair(feats + first * PF_N_FEATURES, p) : zero;
    s1[p] = s2[p] = nz[p] = zero;
  }
  for (pf_i64 j = first; j < b; ++j) {
    const bool w = valid[j] != 0;
    const float* row = feats + j * PF_N_FEATURES;
PF_UNROLL
    for (int p = 0; p < PF_PAIRS; ++p) {
      const pf_v2d x = w ? pf_pair(row, p) : shift[p];
      const pf_v2d d = x - shift[p];
      s1[p] = s1[p] + d;
      s2[p] = s2[p] + d * d;
      lo[p] = pf_select(x < lo[p], x, lo[p]);
      hi[p] = pf_select(x > hi[p], x, hi[p]);
      nz[p] = nz[p] + (w ? pf_select(x != zero, one, zero) : zero);
    }
    n_valid += w;
  }
PF_UNROLL
  for (int f = 0; f < PF_N_FEATURES; ++f) {
    const int p = f / 2, i = f % 2;
    out[f * PF_MOMENTS + 0] = shift[p][i];
    out[f * PF_MOMENTS + 1] = s1[p][i];
    out[f * PF_MOMENTS + 2] = s2[p][i];
    out[f * PF_MOMENTS + 3] = lo[p][i];
    out[f * PF_MOMENTS + 4] = hi[p][i];
    out[f * PF_MOMENTS + 5] = nz[p][i];
  }
  return n_valid;
}
#endif

PF_KERNEL void pf_moments(pf_i64 n_blocks, const pf_i64* __restrict__ block_start,
                          const pf_i64* __restrict__ block_end, const float* __restrict__ feats,
                          const unsigned char* __restrict__ valid, const signed char* __restrict__ swing,
                          pf_i64* __restrict__ counts, double* __restrict__ moments) {
  const pf_i64 k = pf_thread_index();
  if (k >= n_blocks) return;
  const pf_i64 a = block_start[k], b = block_end[k];
  pf_i64 first = a;
  while (first < b && !valid[first]) ++first;
  double* out = moments + k * PF_N_FEATURES * PF_MOMENTS;
#ifdef PF_GPU
  const pf_i64 n_valid = pf_feature_moments(first, b, feats, valid, out);
#else
  const pf_i64 n_valid = pf_feature_moments_pairs(first, b, feats, valid, out);
#endif
  pf_i64 highs = 0, lows = 0;
  for (pf_i64 j = a; j < b; ++j) {
    const signed char code = swing[j];
    highs += code == 1;
    lows += code == 2;
  }
  counts[k * 3 + 0] = n_valid;
  counts[k * 3 + 1] = highs;
  counts[k * 3 + 2] = lows;
}
