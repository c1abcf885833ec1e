// lstm_ext core: kernel levels, and the table through which every call reaches one.
//
// Pure C++17; no Python headers, no Eigen.
//
// The compute code of the core (every cell's forward and backward, the product kernels, the
// pointwise passes, the dense layers' products and functions, the memory probe) is compiled once per kernel level, each time with that
// level's instruction set, into a namespace of its own:
//
//   lstm_ext::baseline   x86-64 (SSE2): every x86-64 CPU; on other architectures the only level,
//                        built with the compiler's defaults (Eigen's portable code)
//   lstm_ext::fma128     x86-64-v2 with AVX's FMA on 128-bit (SSE) packets: the FMA CPUs without
//                        AVX2 (AMD Piledriver to Excavator); the same bits as avx2 and avx512
//   lstm_ext::avx2       x86-64-v3: AVX, AVX2, FMA, BMI1/2, F16C, LZCNT, MOVBE (Haswell, Zen 1 on)
//   lstm_ext::avx512     x86-64-v4: x86-64-v3 and AVX-512 F, BW, CD, DQ, VL (Skylake-SP, Zen 4 on)
//   lstm_ext::native     instead of the three, in a build for the building machine alone
//                        (LSTM_EXT_NATIVE=ON: -march=native)
//
// A level's files see Eigen under a name of their own as well (CMakeLists.txt), so no inline
// function of Eigen or of the core compiled for one level can be taken by the linker for
// another level's calls. What remains shared (inline functions of the standard library and of
// types.hpp) resolves, at link time, to the first copy the linker meets: the link line lists the
// baseline's objects first, then the levels from the lowest up, so a shared function is always
// the copy of a level every caller's CPU has. tests/test_levels.py checks the extension's
// machine code for it.
//
// Each level fills one table (KernelLevel) with pointers to its kernels, made at the first
// request, never at load time: no code of a level runs before the CPU is known to support it.
// At import the bindings choose the level once (select_kernel_level): the best the CPU and the
// OS support, or the one LSTM_EXT_KERNELS names; every call then goes through that level's
// table.
#pragma once

#include "rnn/cpu.hpp"
#include "rnn/dense.hpp"
#include "rnn/gru.hpp"
#include "rnn/lstm.hpp"
#include "rnn/rnn.hpp"
#include "rnn/types.hpp"

#include <string>
#include <vector>

namespace lstm_ext {

// One level's kernels for one dtype.
template <typename Scalar>
struct Kernels {
  Index lanes;  // values in one SIMD packet: the width of the panels in the workspaces' packed blocks
  LstmKernels<Scalar> lstm;
  GruKernels<Scalar> gru;
  RnnKernels<Scalar> rnn;
  DenseKernels<Scalar> dense;
};

// One level: its kernels for both dtypes, and what it is.
struct KernelLevel {
  const char* name;  // "baseline", "fma128", "avx2", "avx2_vnni", "avx512", "avx512_vnni" or "native"
  std::string simd;  // the SIMD instruction sets the kernels use at this level, and the packet widths
  const char* int8;  // the int8 products' instructions (int8_kernels.inc): "avx512_vnni", "avx2", ...
  Kernels<float> f32;
  Kernels<double> f64;
  // Bytes per second at which a team of up to `threads` threads reads a buffer of `bytes` bytes
  // over and over, `passes` times, each member its own contiguous part, with SIMD loads: the
  // bandwidth of whichever cache level (or memory) a working set of that size lives in. The
  // best of `trials` timings (the benchmark's roofline).
  double (*read_bandwidth)(Index bytes, int threads, int passes, int trials);
};

// A level compiled into this build: its name, the CPU features it was compiled for, and its
// table (which runs that level's code: ask for it only on a CPU that has those features).
struct CompiledLevel {
  const char* name;
  const CpuFeatures* compiled_for;
  const KernelLevel& (*table)();
};

// The levels of this build, lowest first.
const std::vector<CompiledLevel>& compiled_levels();

// The best level for a CPU with these features: the last compiled level it has every feature of;
// nullptr when none (a native build for another CPU). The import's choice, unless LSTM_EXT_KERNELS
// names one; tests call it with the features of CPUs this machine is not.
const CompiledLevel* best_level_for(CpuFeatures cpu);

// Chooses the level every call will use, once: LSTM_EXT_KERNELS names one (its value, or
// `forced`), else the best the CPU supports. Throws std::runtime_error, with a message that
// names the missing CPU features and what to do, when the named level is not compiled in or the
// CPU lacks what it needs, or when no level of this build can run here (a native build on
// another CPU). Later calls return the level chosen first.
const KernelLevel& select_kernel_level();

// The level in use (select_kernel_level() must have succeeded).
const KernelLevel& kernel_level();

// The active level's kernels for one dtype.
template <typename Scalar>
const Kernels<Scalar>& kernels();
template <>
inline const Kernels<float>& kernels<float>() {
  return kernel_level().f32;
}
template <>
inline const Kernels<double>& kernels<double>() {
  return kernel_level().f64;
}

// What each level defines (in its namespace), for level.cpp.
#ifdef LSTM_EXT_LEVEL
namespace LSTM_EXT_LEVEL {
template <typename Scalar>
LstmKernels<Scalar> lstm_kernels(bool vnni);  // lstm.cpp
template <typename Scalar>
GruKernels<Scalar> gru_kernels(bool vnni);    // gru.cpp
template <typename Scalar>
RnnKernels<Scalar> rnn_kernels(bool vnni);    // rnn.cpp
template <typename Scalar>
DenseKernels<Scalar> dense_kernels();  // dense.cpp
double read_bandwidth(Index bytes, int threads, int passes, int trials);  // probe.cpp
}  // namespace LSTM_EXT_LEVEL
#endif

}  // namespace lstm_ext
