// portable.cuh: lets one CUDA C source build for the GPU (NVRTC or nvcc) and
// for the host CPU (g++ with OpenMP), so every kernel line runs in CI.
//
// GPU build (__CUDACC__ or __CUDACC_RTC__): CUDA as usual.
// Host build: __global__/__device__ vanish, threadIdx/blockIdx/blockDim are
// thread-local variables, and PF_LAUNCH runs grid x block "threads" as an
// OpenMP loop. Kernels therefore never use __syncthreads or shared memory:
// each CUDA thread must be an independent task.
#pragma once

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define PF_GPU 1
#define PF_DEVICE __device__ __forceinline__
#define PF_KERNEL extern "C" __global__
#define PF_UNROLL _Pragma("unroll")
typedef long long pf_i64;
typedef unsigned long long pf_u64;
// Bit pattern of a double, for bit-for-bit state comparison.
PF_DEVICE pf_u64 pf_bits(double x) { return (pf_u64)__double_as_longlong(x); }
PF_DEVICE double pf_fabs(double x) { return fabs(x); }
// Round a double to float (round to nearest even) keeping subnormal results. CuPy's
// RawModule always appends -ftz=true, under which a plain (float) cast or
// __double2float_rn becomes cvt.rn.ftz.f32.f64 and flushes results below 2^-126
// to zero, unlike numpy's cast in the reference. Inline PTX is never rewritten.
PF_DEVICE float pf_f32(double x) { float r; asm("cvt.rn.f32.f64 %0, %1;" : "=f"(r) : "d"(x)); return r; }
#else
#include <math.h>
#include <stdint.h>
#include <string.h>
#define PF_DEVICE static inline
#define PF_KERNEL extern "C"
#define __global__
#define __device__
#define __restrict__ __restrict
#define PF_UNROLL _Pragma("GCC unroll 64")
typedef long long pf_i64;
typedef unsigned long long pf_u64;
struct pf_dim3 { unsigned int x, y, z; };
// initial-exec: plain %fs-relative loads instead of a __tls_get_addr call per access.
#define PF_TLS static thread_local __attribute__((tls_model("initial-exec")))
PF_TLS pf_dim3 threadIdx, blockIdx, blockDim, gridDim;
PF_DEVICE pf_u64 pf_bits(double x) { pf_u64 u; memcpy(&u, &x, sizeof u); return u; }
PF_DEVICE double pf_fabs(double x) { return fabs(x); }
PF_DEVICE float pf_f32(double x) { return (float)x; }  // no FTZ/DAZ: never built with fast-math
// Run kernel(args...) for every thread of a 1-D grid of `block`-thread blocks: the
// blocks are shared among OpenMP threads, the threads of a block run in order.
// Elementwise kernels use large blocks (cheap iterations), chunk kernels blocks of 1
// (each chunk is a task of its own). A grid of one block runs on the calling thread alone
// (the same work, by the same single thread, without waking an OpenMP team).
#define PF_LAUNCH(kernel, n_threads, block, ...)                                   \
  do {                                                                            \
    const pf_i64 pf_n_ = (n_threads);                                             \
    const unsigned int pf_b_ = (block);                                           \
    const pf_i64 pf_grid_ = (pf_n_ + pf_b_ - 1) / pf_b_;                          \
    _Pragma("omp parallel if (pf_grid_ > 1)")                                     \
    {                                                                             \
      blockDim.x = pf_b_; blockDim.y = blockDim.z = 1;                            \
      gridDim.x = (unsigned int)pf_grid_; gridDim.y = gridDim.z = 1;              \
      blockIdx.y = blockIdx.z = threadIdx.y = threadIdx.z = 0;                    \
      _Pragma("omp for schedule(guided)")                                         \
      for (pf_i64 pf_blk_ = 0; pf_blk_ < pf_grid_; ++pf_blk_) {                   \
        blockIdx.x = (unsigned int)pf_blk_;                                       \
        for (unsigned int pf_t_ = 0; pf_t_ < pf_b_; ++pf_t_) {                    \
          threadIdx.x = pf_t_;                                                    \
          kernel(__VA_ARGS__);                                                    \
        }                                                                         \
      }                                                                           \
    }                                                                             \
  } while (0)
// Run element(j, args...) for j = 0 .. n_threads-1 as a plain static OpenMP loop: for
// elementwise kernels whose body is a PF_DEVICE function of the element index.
#define PF_FOR_EACH(element, n_threads, ...)                                        \
  do {                                                                            \
    const pf_i64 pf_n_ = (n_threads);                                             \
    _Pragma("omp parallel for schedule(static)")                                  \
    for (pf_i64 pf_j_ = 0; pf_j_ < pf_n_; ++pf_j_) element(pf_j_, __VA_ARGS__);  \
  } while (0)
#endif

// Global 1-D thread index, 64-bit so grids over billions of bars do not wrap.
PF_DEVICE pf_i64 pf_thread_index() { return (pf_i64)blockIdx.x * blockDim.x + threadIdx.x; }
