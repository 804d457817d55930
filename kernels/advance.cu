// advance.cu: the live step. One thread per series advances it by its new bars from its
// state, running the very functions the batch kernels run (pf_candle_element for features
// 0..4, pf_step for the state machine and features 5..9), so a stream that feeds bars in any
// grouping equals a batch build bit for bit. No chunks and no speculation: a live update has
// one or a few bars per series, and each series runs in order on its thread.
//
//   pf_advance(n_series, series_bounds, o, h, l, c, params, state, feats, valid, swing)
//     series_bounds : [S + 1] i64     series s owns bars series_bounds[s] .. series_bounds[s + 1]
//     o, h, l, c    : [n] double      the new bars, series after series, each in time order
//     params        : 8 doubles       state.cuh PfParams (eps is params[0], as pf_candle's eps)
//     state         : [S, D] double   in: each series' state before its first new bar;
//                                     out: its state after its last (D = 16 + PF_ATR_PERIOD)
//     feats [n, 10] float; valid [n] u8; swing [n] i8 (1 swing high confirmed, 2 swing low)
//
// Called by gpu_features/engines/launch.py run_advance (the live stream, gpu_features/stream.py).
#include "candle.cu"

PF_KERNEL void pf_advance(pf_i64 n_series, const pf_i64* __restrict__ series_bounds, const double* __restrict__ o,
                          const double* __restrict__ h, const double* __restrict__ l, const double* __restrict__ c,
                          const double* __restrict__ params, double* __restrict__ state, float* __restrict__ feats,
                          unsigned char* __restrict__ valid, signed char* __restrict__ swing) {
  const pf_i64 k = pf_thread_index();
  if (k >= n_series) return;
  const PfParams p = pf_params(params);
  const pf_i64 a = series_bounds[k], b = series_bounds[k + 1];
  double* packed = state + k * PF_STATE_DIM;
  PfState s;
  pf_unpack(packed, s);
  for (pf_i64 j = a; j < b; ++j) {
    pf_candle_element(j, b, o, h, l, c, p.eps, feats);
    pf_step<true>(s, p, h[j], l[j], c[j], feats + j * PF_N_FEATURES, valid + j, swing + j);
  }
  pf_pack(s, packed);
}
