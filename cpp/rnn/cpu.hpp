// lstm_ext core: the x86-64 CPU features that kernel levels are compiled for, and those of the
// CPU this process runs on.
//
// Pure C++17; no Python headers, no Eigen. Compiled for the baseline: it runs before any level
// is chosen.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lstm_ext {

// The features a compiler may use on its own (vector, bit-manipulation and cryptography
// instructions) at -march=x86-64-v2, -v3, -v4 or -march=native; cpu.cpp says where cpuid
// reports each. Instructions reached only through intrinsics the core does not use (AMX, ...)
// are left out.
#define LSTM_EXT_CPU_FEATURES(X)                                                                           \
  X(sse3) X(ssse3) X(sse4_1) X(sse4_2) X(popcnt) X(pclmul) X(aes) X(movbe) X(xsave) X(rdrnd) X(avx)       \
  X(f16c) X(fma) X(avx2) X(bmi1) X(bmi2) X(lzcnt) X(prfchw) X(adx) X(rdseed) X(sha) X(avx512f) X(avx512dq)           \
  X(avx512cd) X(avx512bw) X(avx512vl) X(avx512ifma) X(avx512vbmi) X(avx512vbmi2) X(avx512vnni)           \
  X(avx512bitalg) X(avx512vpopcntdq) X(avx512bf16) X(avx512fp16) X(avxvnni) X(gfni) X(vaes) X(vpclmulqdq)

enum class CpuFeature : int {
#define LSTM_EXT_FEATURE_ENUM(name) name,
  LSTM_EXT_CPU_FEATURES(LSTM_EXT_FEATURE_ENUM)
#undef LSTM_EXT_FEATURE_ENUM
};

// A set of features: bit f for CpuFeature f.
using CpuFeatures = std::uint64_t;
constexpr CpuFeatures feature_bit(CpuFeature f) { return CpuFeatures(1) << static_cast<int>(f); }

// This CPU's features, as cpuid reports them, without those whose registers the OS does not save
// on a context switch (AVX and AVX-512 state, XCR0): the instructions this process may run.
// Empty on other architectures.
CpuFeatures cpu_features();

// The names of the features in `features`, in the list's order ("avx2", "fma", ...).
std::vector<std::string> feature_names(CpuFeatures features);

// The value of the environment variable `name` without the whitespace around it; "" when it is
// unset, empty or whitespace only (an empty LSTM_EXT_* variable means the same as an unset one).
std::string environment_value(const char* name);

}  // namespace lstm_ext
