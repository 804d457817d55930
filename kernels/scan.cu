// scan.cu: the sequential features as a speculative chunk scan, then an exact fix-up.
//
// Bars are cut into chunks of at most C bars that never cross a series start
// ("segment": a series, or the continuation of one from a given state).
//
//   pf_scan   one thread per chunk k = [start[k], end[k]): starts cold `warm` bars
//             early (FEATURES.md, Parallel evaluation), or exactly from the
//             segment's given state when that early start would leave the
//             segment; records the state reached at start[k] and at end[k] and
//             writes features 5..9, valid, swing and any snapshots inside the chunk.
//   pf_check  one thread per chunk: bad[k] = 1 when chunk k's start state differs,
//             bit for bit, from chunk k-1's end state (same segment).
//   pf_fixup  one thread per segment: walks its chunks in order and re-runs every
//             chunk whose start state is wrong from the true state (its predecessor's
//             end state, itself already right), so one pass leaves every chunk exact.
//             fixups[s] counts the re-runs.
//
// Arrays: h,l,c [n] double; feats [n,10] float; valid [n] u8; swing [n] i8;
// chunk_start/end/segment [n_chunks] i64; seg_start [S] i64; seg_state [S, D] double;
// start_state/end_state [n_chunks, D] double; snap_pos [m] i64 sorted, snap_state [m, D];
// D = 16 + PF_ATR_PERIOD. Params: 8 doubles (see state.cuh PfParams).
#include "state.cuh"

struct PfBars {
  const double* __restrict__ h;
  const double* __restrict__ l;
  const double* __restrict__ c;
};

struct PfOut {
  float* __restrict__ feats;
  unsigned char* __restrict__ valid;
  signed char* __restrict__ swing;
  const pf_i64* __restrict__ snap_pos;
  pf_i64 n_snap;
  double* __restrict__ snap_state;
};

// First index q with snap_pos[q] >= x (snap_pos sorted ascending).
PF_DEVICE pf_i64 pf_lower_bound(const pf_i64* __restrict__ a, pf_i64 n, pf_i64 x) {
  pf_i64 lo = 0, hi = n;
  while (lo < hi) {
    const pf_i64 mid = lo + (hi - lo) / 2;
    if (a[mid] < x) lo = mid + 1; else hi = mid;
  }
  return lo;
}

// Bars [a, b) from state s, writing every output of those bars.
PF_DEVICE void pf_run_chunk(PfState& s, const PfParams& p, const PfBars& bars, const PfOut& out,
                            pf_i64 a, pf_i64 b) {
  pf_i64 q = pf_lower_bound(out.snap_pos, out.n_snap, a);
  for (pf_i64 j = a; j < b; ++j) {
    while (q < out.n_snap && out.snap_pos[q] == j) pf_pack(s, out.snap_state + q++ * PF_STATE_DIM);
    pf_step<true>(s, p, bars.h[j], bars.l[j], bars.c[j], out.feats + j * PF_N_FEATURES, out.valid + j,
                  out.swing + j);
  }
}

PF_DEVICE bool pf_same_state(const double* __restrict__ x, const double* __restrict__ y) {
  bool same = true;
  for (int k = 0; k < PF_STATE_DIM; ++k) same = same && pf_bits(x[k]) == pf_bits(y[k]);
  return same;
}

PF_KERNEL void pf_scan(pf_i64 n_chunks, const pf_i64* __restrict__ chunk_start,
                       const pf_i64* __restrict__ chunk_end, const pf_i64* __restrict__ chunk_segment,
                       const pf_i64* __restrict__ seg_start, const double* __restrict__ seg_state,
                       const double* __restrict__ h, const double* __restrict__ l,
                       const double* __restrict__ c, const double* __restrict__ params, pf_i64 warm, float* __restrict__ feats,
                       unsigned char* __restrict__ valid, signed char* __restrict__ swing,
                       double* __restrict__ start_state, double* __restrict__ end_state,
                       const pf_i64* __restrict__ snap_pos, pf_i64 n_snap, double* __restrict__ snap_state) {
  const pf_i64 k = pf_thread_index();
  if (k >= n_chunks) return;
  const PfParams p = pf_params(params);
  const PfBars bars = {h, l, c};
  const PfOut out = {feats, valid, swing, snap_pos, n_snap, snap_state};
  const pf_i64 a = chunk_start[k], b = chunk_end[k], seg = chunk_segment[k], g = seg_start[seg];
  const double* given = seg_state + seg * PF_STATE_DIM;
  PfState s;
  pf_i64 j0 = a - warm;
  // A cold start needs bars j0-P-1 .. j0-1 inside the segment (the exact true-range window).
  if (j0 - PF_P - 1 >= g) {
    pf_cold_state(s, (pf_i64)given[0] + (j0 - g), j0, h, l, c);
  } else {
    pf_unpack(given, s);
    j0 = g;
  }
  for (pf_i64 j = j0; j < a; ++j) pf_step<false>(s, p, h[j], l[j], c[j], 0, 0, 0);
  pf_pack(s, start_state + k * PF_STATE_DIM);
  pf_run_chunk(s, p, bars, out, a, b);
  pf_pack(s, end_state + k * PF_STATE_DIM);
}

PF_KERNEL void pf_check(pf_i64 n_chunks, const pf_i64* __restrict__ chunk_start,
                        const pf_i64* __restrict__ chunk_segment, const pf_i64* __restrict__ seg_start,
                        const double* __restrict__ start_state, const double* __restrict__ end_state,
                        unsigned char* __restrict__ bad) {
  const pf_i64 k = pf_thread_index();
  if (k >= n_chunks) return;
  const bool first = chunk_start[k] == seg_start[chunk_segment[k]];
  bad[k] = (unsigned char)(!first && !pf_same_state(start_state + k * PF_STATE_DIM,
                                                    end_state + (k - 1) * PF_STATE_DIM));
}

PF_KERNEL void pf_fixup(pf_i64 n_segments, const pf_i64* __restrict__ seg_first_chunk,
                        const pf_i64* __restrict__ chunk_start, const pf_i64* __restrict__ chunk_end,
                        const unsigned char* __restrict__ bad, const double* __restrict__ h,
                        const double* __restrict__ l, const double* __restrict__ c,
                        const double* __restrict__ params, float* __restrict__ feats,
                        unsigned char* __restrict__ valid, signed char* __restrict__ swing,
                        double* __restrict__ start_state, double* __restrict__ end_state,
                        const pf_i64* __restrict__ snap_pos, pf_i64 n_snap, double* __restrict__ snap_state,
                        int* __restrict__ fixups) {
  const pf_i64 s_idx = pf_thread_index();
  if (s_idx >= n_segments) return;
  const PfParams p = pf_params(params);
  const PfBars bars = {h, l, c};
  const PfOut out = {feats, valid, swing, snap_pos, n_snap, snap_state};
  int count = 0;
  bool rerun_prev = false;
  for (pf_i64 k = seg_first_chunk[s_idx] + 1; k < seg_first_chunk[s_idx + 1]; ++k) {
    double* start = start_state + k * PF_STATE_DIM;
    const double* truth = end_state + (k - 1) * PF_STATE_DIM;
    // bad[k] was judged against the predecessor's first end state; after a
    // re-run of the predecessor that may have changed, so compare again.
    rerun_prev = (bad[k] || rerun_prev) && !pf_same_state(start, truth);
    if (!rerun_prev) continue;
    for (int q = 0; q < PF_STATE_DIM; ++q) start[q] = truth[q];
    PfState s;
    pf_unpack(start, s);
    pf_run_chunk(s, p, bars, out, chunk_start[k], chunk_end[k]);
    pf_pack(s, end_state + k * PF_STATE_DIM);
    ++count;
  }
  fixups[s_idx] = count;
}
