// candle.cu: the elementwise half of relativity-10, one thread per bar.
//
//   pf_candle(n, o, h, l, c, eps, feats, tr)
//     o, h, l, c : [n] double   bars of all series, concatenated
//     feats      : [n, 10] float features 0..4 (open_norm .. lower_wick_pct) of each row
//     tr         : [n] double   true range of bar j against c[j-1]; tr[0] = 0. At a series
//                               start the value mixes two series and is never read: the scan
//                               only reads tr[j] where bar j-1 lies in bar j's series.
//
// GPU: NVRTC with --fmad=false. Host: g++ -ffp-contract=off via host_entry.cpp.
#include "state.cuh"

PF_KERNEL void pf_candle(pf_i64 n, const double* __restrict__ o, const double* __restrict__ h,
                         const double* __restrict__ l, const double* __restrict__ c, double eps,
                         float* __restrict__ feats, double* __restrict__ tr) {
  const pf_i64 j = pf_thread_index();
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
  tr[j] = j == 0 ? 0.0 : pf_true_range(hj, lj, c[j - 1]);
}
