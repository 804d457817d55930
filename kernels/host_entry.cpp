// host_entry.cpp: the host build of the kernels. Compiles candle.cu, scan.cu, stats.cu and advance.cu
// as plain C++ (see portable.cuh) and exports one launcher per kernel that
// runs its grid as an OpenMP loop. Built by gpu_features/engines/host.py:
//   g++ -O3 -ffp-contract=off -fopenmp -fPIC -shared -DPF_ATR_PERIOD=P host_entry.cpp
#include <omp.h>

#include "candle.cu"
#include "scan.cu"
#include "stats.cu"
#include "advance.cu"

// Host block size of chunk and series kernels: one per task, so few long chunks still
// spread over cores. Elementwise kernels run their per-element body as a plain static
// loop instead (PF_FOR_EACH): no per-element thread-index bookkeeping, so it vectorizes.
#define PF_TASK_BLOCK 1
// Series per host block of pf_advance: a live update of up to this many series runs on the calling
// thread (a one-block grid wakes no OpenMP team, see PF_LAUNCH), so its latency never waits for
// threads to wake on a busy machine; larger updates (backfills) share blocks among the cores.
#define PF_ADVANCE_BLOCK 4096

extern "C" {

void host_pf_candle(pf_i64 n_threads, pf_i64 n, const double* o, const double* h, const double* l,
                    const double* c, double eps, float* feats) {
  PF_FOR_EACH(pf_candle_element, n_threads, n, o, h, l, c, eps, feats);
}

void host_pf_scan(pf_i64 n_threads, pf_i64 n_chunks, const pf_i64* chunk_start, const pf_i64* chunk_end,
                  const pf_i64* chunk_segment, const pf_i64* seg_start, const double* seg_state,
                  const double* h, const double* l, const double* c, const double* params, pf_i64 warm, float* feats, unsigned char* valid, signed char* swing,
                  double* start_state, double* end_state, const pf_i64* snap_pos, pf_i64 n_snap,
                  double* snap_state) {
  PF_LAUNCH(pf_scan, n_threads, PF_TASK_BLOCK, n_chunks, chunk_start, chunk_end, chunk_segment, seg_start,
            seg_state, h, l, c, params, warm, feats, valid, swing, start_state, end_state, snap_pos,
            n_snap, snap_state);
}

void host_pf_check(pf_i64 n_threads, pf_i64 n_chunks, const pf_i64* chunk_start, const pf_i64* chunk_segment,
                   const pf_i64* seg_start, const double* start_state, const double* end_state,
                   unsigned char* bad) {
  PF_LAUNCH(pf_check, n_threads, PF_TASK_BLOCK, n_chunks, chunk_start, chunk_segment, seg_start, start_state,
            end_state, bad);
}

void host_pf_fixup(pf_i64 n_threads, pf_i64 n_segments, const pf_i64* seg_first_chunk,
                   const pf_i64* chunk_start, const pf_i64* chunk_end, const unsigned char* bad,
                   const double* h, const double* l, const double* c, const double* params, float* feats,
                   unsigned char* valid, signed char* swing, double* start_state, double* end_state,
                   const pf_i64* snap_pos, pf_i64 n_snap, double* snap_state, int* fixups) {
  PF_LAUNCH(pf_fixup, n_threads, PF_TASK_BLOCK, n_segments, seg_first_chunk, chunk_start, chunk_end, bad, h, l,
            c, params, feats, valid, swing, start_state, end_state, snap_pos, n_snap, snap_state, fixups);
}

void host_pf_moments(pf_i64 n_threads, pf_i64 n_blocks, const pf_i64* block_start, const pf_i64* block_end,
                     const float* feats, const unsigned char* valid, const signed char* swing, pf_i64* counts,
                     double* moments) {
  PF_LAUNCH(pf_moments, n_threads, PF_TASK_BLOCK, n_blocks, block_start, block_end, feats, valid, swing, counts,
            moments);
}

void host_pf_advance(pf_i64 n_threads, pf_i64 n_series, const pf_i64* series_bounds, const double* o,
                      const double* h, const double* l, const double* c, const double* params, double* state,
                      float* feats, unsigned char* valid, signed char* swing) {
  PF_LAUNCH(pf_advance, n_threads, PF_ADVANCE_BLOCK, n_series, series_bounds, o, h, l, c, params, state, feats, valid,
            swing);
}

int host_pf_state_dim(void) { return PF_STATE_DIM; }

// Threads a launch will use (OMP_NUM_THREADS, else the cores), for tests and benchmarks.
int host_pf_max_threads(void) { return omp_get_max_threads(); }

}  // extern "C"
