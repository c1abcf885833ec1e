// lstm_ext core: the levels this build has and the choice of one (see kernels.hpp). Compiled
// for the baseline: it runs before any level is known to be supported.
#include "rnn/kernels.hpp"

#include <cstdlib>
#include <mutex>
#include <stdexcept>

// int8.hpp's condition for the avx2 level's VNNI partner: a compiler that knows AVX-VNNI.
#if (defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 11)
#define LSTM_EXT_AVX2_VNNI
#endif

#ifndef LSTM_EXT_NATIVE_FLAGS
#define LSTM_EXT_NATIVE_FLAGS "-march=native"
#endif

namespace lstm_ext {

// Each level's constant and table (level.cpp). CMake compiles the x86-64 levels (baseline, fma128,
// avx2, avx512), or the baseline alone elsewhere, or one native level (LSTM_EXT_NATIVE=ON). The
// avx2 and avx512 levels have a partner that differs in its int8 products alone, which use VNNI
// (avx2_vnni: AVX-VNNI, when the compiler knows it; avx512_vnni: AVX-512 VNNI); the best level
// is the last one the CPU can run, so a CPU with VNNI takes the partner.
#define LSTM_EXT_DECLARE_LEVEL(level)      \
  namespace level {                        \
  extern const CpuFeatures kCompiledFor;   \
  const KernelLevel& table();              \
  extern const CpuFeatures kCompiledForVnni; \
  const KernelLevel& table_vnni();         \
  }
#if defined(LSTM_EXT_NATIVE_LEVEL)
LSTM_EXT_DECLARE_LEVEL(native)
#else
LSTM_EXT_DECLARE_LEVEL(baseline)
#if defined(LSTM_EXT_X86_LEVELS)
LSTM_EXT_DECLARE_LEVEL(fma128)
LSTM_EXT_DECLARE_LEVEL(avx2)
LSTM_EXT_DECLARE_LEVEL(avx512)
#endif
#endif
#undef LSTM_EXT_DECLARE_LEVEL

const std::vector<CompiledLevel>& compiled_levels() {
  static const auto* levels = new std::vector<CompiledLevel>{  // never destroyed, as the tables
#if defined(LSTM_EXT_NATIVE_LEVEL)
      {"native", &native::kCompiledFor, &native::table},
#else
      {"baseline", &baseline::kCompiledFor, &baseline::table},
#if defined(LSTM_EXT_X86_LEVELS)
      {"fma128", &fma128::kCompiledFor, &fma128::table},
      {"avx2", &avx2::kCompiledFor, &avx2::table},
#if defined(LSTM_EXT_AVX2_VNNI)
      {"avx2_vnni", &avx2::kCompiledForVnni, &avx2::table_vnni},
#endif
      {"avx512", &avx512::kCompiledFor, &avx512::table},
      {"avx512_vnni", &avx512::kCompiledForVnni, &avx512::table_vnni},
#endif
#endif
  };
  return *levels;
}

namespace {

std::string joined(const std::vector<std::string>& words) {
  std::string text;
  for (const std::string& w : words) text += (text.empty() ? "" : ", ") + w;
  return text;
}

// The names of the compiled levels, and of those this CPU can run.
std::string level_names(bool runnable_only) {
  std::vector<std::string> names;
  for (const CompiledLevel& level : compiled_levels()) {
    if (!runnable_only || (*level.compiled_for & ~cpu_features()) == 0) names.emplace_back(level.name);
  }
  return joined(names);
}

}  // namespace

const CompiledLevel* best_level_for(CpuFeatures cpu) {
  const CompiledLevel* best = nullptr;
  for (const CompiledLevel& level : compiled_levels()) {
    if ((*level.compiled_for & ~cpu) == 0) best = &level;
  }
  return best;
}

namespace {

// The level to use, or an exception saying why none can be.
const KernelLevel& choose() {
  const CpuFeatures cpu = cpu_features();
  const std::string forced = environment_value("LSTM_EXT_KERNELS");  // "" when unset or empty
  if (!forced.empty() && forced != "auto") {
    for (const CompiledLevel& level : compiled_levels()) {
      if (level.name != forced) continue;
      const CpuFeatures missing = *level.compiled_for & ~cpu;
      if (missing != 0) {
        throw std::runtime_error("LSTM_EXT_KERNELS=" + forced + ": this CPU lacks " +
                                 joined(feature_names(missing)) + ", which that kernel level needs; the levels it can "
                                 "run are: " + level_names(true) + " (unset LSTM_EXT_KERNELS for the best of them)");
      }
      return level.table();
    }
    throw std::runtime_error("LSTM_EXT_KERNELS=" + forced + ": expected one of this build's kernel levels (" +
                             level_names(false) + "), or unset or 'auto' for the best this CPU supports");
  }
  const CompiledLevel* best = best_level_for(cpu);
  if (best == nullptr) {  // only a native build can get here: the baseline runs everywhere
    const CompiledLevel& level = compiled_levels().front();
    throw std::runtime_error(
        "lstm_ext was built for another CPU (LSTM_EXT_NATIVE=ON, " LSTM_EXT_NATIVE_FLAGS ") and this CPU lacks " +
        joined(feature_names(*level.compiled_for & ~cpu)) +
        ". Reinstall it without that option (the default build runs on every x86-64 CPU and picks the best kernels "
        "for each), or build it again on this machine.");
  }
  return best->table();
}

std::once_flag g_chosen;
const KernelLevel* g_level = nullptr;

}  // namespace

const KernelLevel& select_kernel_level() {
  std::call_once(g_chosen, [] { g_level = &choose(); });  // (an exception leaves it to be tried again)
  return *g_level;
}

const KernelLevel& kernel_level() { return *g_level; }

}  // namespace lstm_ext
