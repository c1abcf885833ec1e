// lstm_ext core: one kernel level's table of kernels (kernels.hpp), and the CPU features the
// level was compiled for. Compiled once per level, like the kernels.
#include "rnn/kernels.hpp"

#include "rnn/common.hpp"
#include "rnn/int8.hpp"

#include <string>

namespace lstm_ext {
namespace LSTM_EXT_LEVEL {

// The CPU features this level was compiled for, from the compiler's own predefined macros (so
// they follow the level's flags, -march=native included). A constant, not code: the baseline
// dispatch reads it before it runs anything of this level.
extern const CpuFeatures kCompiledFor;
const CpuFeatures kCompiledFor = CpuFeatures(0)
#ifdef __SSE3__
    | feature_bit(CpuFeature::sse3)
#endif
#ifdef __SSSE3__
    | feature_bit(CpuFeature::ssse3)
#endif
#ifdef __SSE4_1__
    | feature_bit(CpuFeature::sse4_1)
#endif
#ifdef __SSE4_2__
    | feature_bit(CpuFeature::sse4_2)
#endif
#ifdef __POPCNT__
    | feature_bit(CpuFeature::popcnt)
#endif
#ifdef __PCLMUL__
    | feature_bit(CpuFeature::pclmul)
#endif
#ifdef __AES__
    | feature_bit(CpuFeature::aes)
#endif
#ifdef __MOVBE__
    | feature_bit(CpuFeature::movbe)
#endif
#ifdef __XSAVE__
    | feature_bit(CpuFeature::xsave)
#endif
#ifdef __RDRND__
    | feature_bit(CpuFeature::rdrnd)
#endif
// FMA instructions are VEX-encoded: they need the AVX state the OS saves (the fma128 level
// undefines __AVX__ for Eigen's sake, CMakeLists.txt, and still needs AVX).
#if defined(__AVX__) || defined(__FMA__)
    | feature_bit(CpuFeature::avx)
#endif
#ifdef __F16C__
    | feature_bit(CpuFeature::f16c)
#endif
#ifdef __FMA__
    | feature_bit(CpuFeature::fma)
#endif
#ifdef __AVX2__
    | feature_bit(CpuFeature::avx2)
#endif
#ifdef __BMI__
    | feature_bit(CpuFeature::bmi1)
#endif
#ifdef __BMI2__
    | feature_bit(CpuFeature::bmi2)
#endif
#ifdef __LZCNT__
    | feature_bit(CpuFeature::lzcnt)
#endif
#ifdef __PRFCHW__
    | feature_bit(CpuFeature::prfchw)
#endif
#ifdef __ADX__
    | feature_bit(CpuFeature::adx)
#endif
#ifdef __RDSEED__
    | feature_bit(CpuFeature::rdseed)
#endif
#ifdef __SHA__
    | feature_bit(CpuFeature::sha)
#endif
#ifdef __AVX512F__
    | feature_bit(CpuFeature::avx512f)
#endif
#ifdef __AVX512DQ__
    | feature_bit(CpuFeature::avx512dq)
#endif
#ifdef __AVX512CD__
    | feature_bit(CpuFeature::avx512cd)
#endif
#ifdef __AVX512BW__
    | feature_bit(CpuFeature::avx512bw)
#endif
#ifdef __AVX512VL__
    | feature_bit(CpuFeature::avx512vl)
#endif
#ifdef __AVX512IFMA__
    | feature_bit(CpuFeature::avx512ifma)
#endif
#ifdef __AVX512VBMI__
    | feature_bit(CpuFeature::avx512vbmi)
#endif
#ifdef __AVX512VBMI2__
    | feature_bit(CpuFeature::avx512vbmi2)
#endif
#ifdef __AVX512VNNI__
    | feature_bit(CpuFeature::avx512vnni)
#endif
#ifdef __AVX512BITALG__
    | feature_bit(CpuFeature::avx512bitalg)
#endif
#ifdef __AVX512VPOPCNTDQ__
    | feature_bit(CpuFeature::avx512vpopcntdq)
#endif
#ifdef __AVX512BF16__
    | feature_bit(CpuFeature::avx512bf16)
#endif
#ifdef __AVX512FP16__
    | feature_bit(CpuFeature::avx512fp16)
#endif
#ifdef __AVXVNNI__
    | feature_bit(CpuFeature::avxvnni)
#endif
#ifdef __GFNI__
    | feature_bit(CpuFeature::gfni)
#endif
#ifdef __VAES__
    | feature_bit(CpuFeature::vaes)
#endif
#ifdef __VPCLMULQDQ__
    | feature_bit(CpuFeature::vpclmulqdq)
#endif
    ;

// The SIMD instruction sets Eigen uses at this level (its own SimdInstructionSetsInUse() leaves
// out AVX2 and FMA), and the packet widths.
std::string simd_in_use() {
  std::string sets;
#ifdef EIGEN_VECTORIZE_SSE2
  const auto add = [&](const char* name) { sets += (sets.empty() ? "" : ", ") + std::string(name); };
#ifdef EIGEN_VECTORIZE_AVX512
  add("AVX512");
#endif
#ifdef EIGEN_VECTORIZE_AVX2
  add("AVX2");
#endif
#ifdef EIGEN_VECTORIZE_FMA
  add("FMA");
#endif
#ifdef EIGEN_VECTORIZE_AVX
  add("AVX");
#endif
#ifdef EIGEN_VECTORIZE_SSE4_2
  add("SSE4.2");
#endif
  add("SSE2");
#else
  sets = Eigen::SimdInstructionSetsInUse();  // other architectures: NEON, VSX, ...
#endif
  return sets + "; packets of " + std::to_string(kPacket<float>) + " floats, " + std::to_string(kPacket<double>) +
         " doubles";
}

// The name of the int8 products' instructions (int8_kernels.inc's Ops).
template <bool vnni>
const char* int8_name() {
#if defined(LSTM_EXT_INT8_VNNI_TARGET)
  if constexpr (vnni) return int8_vnni::Kernel::kName;
#endif
  return int8_base::Kernel::kName;
}

#define LSTM_EXT_LEVEL_NAME(level) LSTM_EXT_STRING(level)
#define LSTM_EXT_STRING(level) #level

// The level's table, made at the first request (a static made at load time would run this
// level's code on any CPU) and never destroyed (a daemon thread may still be in a call of this
// level while the process exits). With vnni, the same kernels but the int8 products of VNNI:
// the "<level>_vnni" level, for the CPUs that have it (kCompiledForVnni).
const KernelLevel* make_table(bool vnni) {
  return new KernelLevel{
      vnni ? LSTM_EXT_LEVEL_NAME(LSTM_EXT_LEVEL) "_vnni" : LSTM_EXT_LEVEL_NAME(LSTM_EXT_LEVEL),
      simd_in_use(),
      vnni ? int8_name<true>() : int8_name<false>(),
      Kernels<float>{kPacket<float>, lstm_kernels<float>(vnni), gru_kernels<float>(vnni), rnn_kernels<float>(vnni),
                     dense_kernels<float>()},
      Kernels<double>{kPacket<double>, lstm_kernels<double>(vnni), gru_kernels<double>(vnni),
                      rnn_kernels<double>(vnni), dense_kernels<double>()},
      &read_bandwidth,
  };
}

const KernelLevel& table() {
  static const KernelLevel* level = make_table(false);
  return *level;
}

#if defined(LSTM_EXT_INT8_VNNI_TARGET)
extern const CpuFeatures kCompiledForVnni;
const CpuFeatures kCompiledForVnni = kCompiledFor | feature_bit(LSTM_EXT_INT8_VNNI_FEATURE);
const KernelLevel& table_vnni() {
  static const KernelLevel* level = make_table(true);
  return *level;
}
#endif

}  // namespace LSTM_EXT_LEVEL
}  // namespace lstm_ext
