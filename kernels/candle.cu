// candle.cu: the elementwise half of relativity-10, one thread per bar.
//
//   pf_candle(n, o, h, l, c, eps, feats)
//     o, h, l, c : [n] double   bars of all series, concatenated
//     feats      : [n, 10] float features 0..4 (open_norm .. lower_wick_pct) of each row
//
// The true range is not stored: the scan computes it where it needs it (state.cuh
// pf_cold_state reads P bars before a chunk's warm-up start, nothing else).
//
// GPU: NVRTC with --fmad=false, one thread per bar. Host: g++ -ffp-contract=off via
// host_entry.cpp, which runs pf_candle_element as a plain OpenMP loop (PF_FOR_EACH).
#pragma once  // advance.cu includes it too (pf_candle_element)
#include "state.cuh"

// Features 0..4 of bar j (nothing when j >= n): the body of pf_candle on both builds.
PF_DEVICE void pf_candle_element(pf_i64 j, pf_i64 n, const double* __restrict__ o, const double* __restrict__ h,
                                 const double* __restrict__ l, const double* __restrict__ c, double eps,
                                 float* __restrict__ feats) {
  if (j >= n) return;
  const double oj = o[j], hj = h[j], lj = l[j], cj = c[j];
  double rng = hj - lj;
  if (eps > rng) rng = eps;  // Python's max(h - l, eps)
  const double top = oj > cj ? oj : cj;   // max(o, c): o unless c is larger
  const double bottom = cj < oj ? cj : oj;  // min(o, c): o unless c is smaller
  float* row = feats + j * PF_N_FEATURES;
  row[0] = pf_f32(pf_clip((oj - lj) / rng, 0.0, 1.0));
  row[1] = pf_f32(pf_clip((cj - lj) / rng, 0.0, 1.0));
  row[2] = pf_f32(pf_clip((cj - oj) / rng, -1.0, 1.0));
  row[3] = pf_f32(pf_clip((hj - top) / rng, 0.0, 1.0));
  row[4] = pf_f32(pf_clip((bottom - lj) / rng, 0.0, 1.0));
}

PF_KERNEL void pf_candle(pf_i64 n, const double* __restrict__ o, const double* __restrict__ h,
                         const double* __restrict__ l, const double* __restrict__ c, double eps,
                         float* __restrict__ feats) {
  pf_candle_element(pf_thread_index(), n, o, h, l, c, eps, feats);
}
