// state.cuh: the FEATURES.md per-bar state machine of one series, shared by
// every kernel. pf_step() is the contract's "per-bar update" and feature
// step 6 for the sequential features (range_z, swing distances, bars-since,
// validity); candle.cu computes the elementwise ones. The packed state
// layout mirrors gpu_features/state.py: [PF_STATE_DIM] doubles.
//
// Numerics: every operation is one IEEE double op in the contract's order;
// built with --fmad=false (NVRTC) or -ffp-contract=off (host), never fast-math.
#pragma once
#include "portable.cuh"

#ifndef PF_ATR_PERIOD
#error "PF_ATR_PERIOD (the config's atr_period) must be defined at build time"
#endif
#define PF_P PF_ATR_PERIOD
#define PF_STATE_DIM (16 + PF_P)
#define PF_N_FEATURES 10

// Config, passed to kernels as a small double array (same order as engines/launch.py kernel_params).
struct PfParams {
  double eps, alpha, zigzag_k, retrace_atr, lookback, hybrid, window_length, warmup;
};
PF_DEVICE PfParams pf_params(const double* __restrict__ p) {
  PfParams q;
  q.eps = p[0]; q.alpha = p[1]; q.zigzag_k = p[2]; q.retrace_atr = p[3];
  q.lookback = p[4]; q.hybrid = p[5]; q.window_length = p[6]; q.warmup = p[7];
  return q;
}

struct PfState {
  pf_i64 bars;           // bars of the series processed = local index of the next bar
  double ema, prev_close;
  int trend;             // 0 NONE, 1 UP, -1 DOWN
  double ext; pf_i64 ext_i;
  int cand_set; double cand; pf_i64 cand_i;
  int sh_set; pf_i64 sh_i; double sh_p;
  int sl_set; pf_i64 sl_i; double sl_p;
  int n_trs;
  double trs[PF_P];      // right-aligned: the last n_trs slots hold the window, oldest first
};

PF_DEVICE void pf_pack(const PfState& s, double* __restrict__ out) {
  out[0] = (double)s.bars; out[1] = s.ema; out[2] = s.prev_close; out[3] = (double)s.trend;
  out[4] = s.ext; out[5] = (double)s.ext_i;
  out[6] = (double)s.cand_set; out[7] = s.cand; out[8] = (double)s.cand_i;
  out[9] = (double)s.sh_set; out[10] = (double)s.sh_i; out[11] = s.sh_p;
  out[12] = (double)s.sl_set; out[13] = (double)s.sl_i; out[14] = s.sl_p;
  out[15] = (double)s.n_trs;
  // Only constant indices into s.trs (after unrolling), so it can live in registers on
  // the GPU: the moving index goes into global memory instead.
  const int skip = PF_P - s.n_trs;
PF_UNROLL
  for (int k = 0; k < PF_P; ++k) out[16 + k] = 0.0;
PF_UNROLL
  for (int k = 0; k < PF_P; ++k)
    if (k >= skip) out[16 + k - skip] = s.trs[k];
}

PF_DEVICE void pf_unpack(const double* __restrict__ in, PfState& s) {
  s.bars = (pf_i64)in[0]; s.ema = in[1]; s.prev_close = in[2]; s.trend = (int)in[3];
  s.ext = in[4]; s.ext_i = (pf_i64)in[5];
  s.cand_set = (int)in[6]; s.cand = in[7]; s.cand_i = (pf_i64)in[8];
  s.sh_set = (int)in[9]; s.sh_i = (pf_i64)in[10]; s.sh_p = in[11];
  s.sl_set = (int)in[12]; s.sl_i = (pf_i64)in[13]; s.sl_p = in[14];
  s.n_trs = (int)in[15];
  const int skip = PF_P - s.n_trs;
PF_UNROLL
  for (int k = 0; k < PF_P; ++k) s.trs[k] = k >= skip ? in[16 + k - skip] : 0.0;
}

// True range of a bar against the previous close (FEATURES.md step 3);
// Python's max(a, b, c) keeps the first of equal values, as does this.
PF_DEVICE double pf_true_range(double h, double l, double prev_close) {
  double m = h - l;
  const double up = pf_fabs(h - prev_close), down = pf_fabs(l - prev_close);
  if (up > m) m = up;
  if (down > m) m = down;
  return m;
}

PF_DEVICE double pf_clip(double x, double a, double b) { return x < a ? a : (x > b ? b : x); }

// Speculative cold state before bar j0 (FEATURES.md, Parallel evaluation):
// nothing confirmed, trend NONE, ema seeded with bar j0's range, the true-range
// window filled exactly with the true ranges of bars j0-P .. j0-1, computed here
// (the caller guarantees those bars and their predecessors lie in the series).
PF_DEVICE void pf_cold_state(PfState& s, pf_i64 local_index, pf_i64 j0, const double* __restrict__ h,
                             const double* __restrict__ l, const double* __restrict__ c) {
  s.bars = local_index;
  s.ema = h[j0] - l[j0];
  s.prev_close = c[j0 - 1];
  s.trend = 0; s.ext = 0.0; s.ext_i = 0;
  s.cand_set = 0; s.cand = 0.0; s.cand_i = 0;
  s.sh_set = 0; s.sh_i = 0; s.sh_p = 0.0;
  s.sl_set = 0; s.sl_i = 0; s.sl_p = 0.0;
  s.n_trs = PF_P;
PF_UNROLL
  for (int k = 0; k < PF_P; ++k) {
    const pf_i64 j = j0 - PF_P + k;
    s.trs[k] = pf_true_range(h[j], l[j], c[j - 1]);
  }
}

// One bar through the state machine. With WRITE, also writes features 5..9 of
// the bar into row[5..9], its validity and its swing code (1 = a swing high was
// confirmed at this bar, 2 = a swing low).
template <bool WRITE>
PF_DEVICE void pf_step(PfState& s, const PfParams& p, double h, double l, double c,
                       float* __restrict__ row, unsigned char* __restrict__ valid,
                       signed char* __restrict__ swing) {
  const double range = h - l;
  s.ema = s.bars == 0 ? range : p.alpha * range + (1.0 - p.alpha) * s.ema;
  double atr = 0.0;
  int code = 0;
  if (s.bars > 0) {
    const double tr = pf_true_range(h, l, s.prev_close);
    // Shift the window left by one; the sum below only reads the last n_trs slots.
PF_UNROLL
    for (int k = 0; k + 1 < PF_P; ++k) s.trs[k] = s.trs[k + 1];
    s.trs[PF_P - 1] = tr;
    if (s.n_trs < PF_P) s.n_trs += 1;
    double total = 0.0;
PF_UNROLL
    for (int k = 0; k < PF_P; ++k)
      if (k >= PF_P - s.n_trs) total = total + s.trs[k];
    atr = total / (double)s.n_trs;
    const pf_i64 i = s.bars;
    if (s.trend == 0) {
      if (atr > 0) { s.ext = c; s.ext_i = i; s.trend = 1; }
    } else {
      const bool up = s.trend == 1;
      if (up && h > s.ext) { s.ext = h; s.ext_i = i; }
      else if (!up && l < s.ext) { s.ext = l; s.ext_i = i; }
      if (up && (!s.cand_set || h > s.cand)) { s.cand = h; s.cand_i = i; s.cand_set = 1; }
      else if (!up && (!s.cand_set || l < s.cand)) { s.cand = l; s.cand_i = i; s.cand_set = 1; }
      if (atr != 0) {
        bool confirm = up ? (s.ext - c >= p.zigzag_k * atr) : (c - s.ext >= p.zigzag_k * atr);
        if (!confirm && p.hybrid != 0.0 && (double)(i - s.cand_i) <= p.lookback)
          confirm = up ? (s.cand - l >= p.retrace_atr * atr) : (h - s.cand >= p.retrace_atr * atr);
        if (confirm) {
          if (up) {
            s.sh_set = 1; s.sh_i = s.ext_i; s.sh_p = s.ext;
            s.trend = -1; s.ext = l; s.cand = l;
            code = 1;
          } else {
            s.sl_set = 1; s.sl_i = s.ext_i; s.sl_p = s.ext;
            s.trend = 1; s.ext = h; s.cand = h;
            code = 2;
          }
          s.ext_i = i; s.cand_i = i; s.cand_set = 1;
        }
      }
    }
  }
  if (WRITE) {
    const double a = atr != 0 ? atr : 1e-8;
    const double ema_floor = p.eps > s.ema ? p.eps : s.ema;  // Python's max(ema, eps)
    row[5] = pf_f32(pf_clip(range / ema_floor, 0.0, 3.0));
    row[6] = s.sh_set ? pf_f32(pf_clip((s.sh_p - c) / a, -3.0, 3.0)) : 0.0f;
    row[7] = s.sl_set ? pf_f32(pf_clip((c - s.sl_p) / a, -3.0, 3.0)) : 0.0f;
    row[8] = s.sh_set ? pf_f32(pf_clip((double)(s.bars - s.sh_i) / p.window_length, 0.0, 3.0)) : 0.0f;
    row[9] = s.sl_set ? pf_f32(pf_clip((double)(s.bars - s.sl_i) / p.window_length, 0.0, 3.0)) : 0.0f;
    *valid = (unsigned char)((double)s.bars >= p.warmup && s.sh_set && s.sl_set);
    *swing = (signed char)code;
  }
  s.prev_close = c;
  s.bars += 1;
}
