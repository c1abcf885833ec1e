// lstm_ext core: what this CPU supports (see cpu.hpp), from cpuid and XCR0.
#include "rnn/cpu.hpp"

#if defined(__x86_64__) || defined(_M_X64)
#define LSTM_EXT_X86_64 1
#if defined(_MSC_VER) && !defined(__clang__)
#include <immintrin.h>
#include <intrin.h>
#else
#include <cpuid.h>
#endif
#endif

#include <array>
#include <cstdlib>

namespace lstm_ext {
namespace {

// Where cpuid reports a feature: leaf, subleaf, register (eax, ebx, ecx, edx = 0..3) and bit,
// and which register state the OS must save for it.
enum class State { none, avx, avx512 };
struct FeatureBit {
  CpuFeature feature;
  unsigned leaf, subleaf;
  int reg, bit;
  State state;
};
constexpr int kEax = 0, kEbx = 1, kEcx = 2, kEdx = 3;
using F = CpuFeature;
constexpr FeatureBit kFeatureBits[] = {
    {F::sse3, 1, 0, kEcx, 0, State::none},          {F::ssse3, 1, 0, kEcx, 9, State::none},
    {F::sse4_1, 1, 0, kEcx, 19, State::none},       {F::sse4_2, 1, 0, kEcx, 20, State::none},
    {F::popcnt, 1, 0, kEcx, 23, State::none},       {F::pclmul, 1, 0, kEcx, 1, State::none},
    {F::aes, 1, 0, kEcx, 25, State::none},          {F::movbe, 1, 0, kEcx, 22, State::none},
    {F::xsave, 1, 0, kEcx, 26, State::none},        {F::rdrnd, 1, 0, kEcx, 30, State::none},
    {F::avx, 1, 0, kEcx, 28, State::avx},           {F::f16c, 1, 0, kEcx, 29, State::avx},
    {F::fma, 1, 0, kEcx, 12, State::avx},           {F::avx2, 7, 0, kEbx, 5, State::avx},
    {F::bmi1, 7, 0, kEbx, 3, State::none},          {F::bmi2, 7, 0, kEbx, 8, State::none},
    {F::lzcnt, 0x80000001u, 0, kEcx, 5, State::none}, {F::prfchw, 0x80000001u, 0, kEcx, 8, State::none},
    {F::adx, 7, 0, kEbx, 19, State::none},
    {F::rdseed, 7, 0, kEbx, 18, State::none},       {F::sha, 7, 0, kEbx, 29, State::none},
    {F::avx512f, 7, 0, kEbx, 16, State::avx512},    {F::avx512dq, 7, 0, kEbx, 17, State::avx512},
    {F::avx512cd, 7, 0, kEbx, 28, State::avx512},   {F::avx512bw, 7, 0, kEbx, 30, State::avx512},
    {F::avx512vl, 7, 0, kEbx, 31, State::avx512},   {F::avx512ifma, 7, 0, kEbx, 21, State::avx512},
    {F::avx512vbmi, 7, 0, kEcx, 1, State::avx512},  {F::avx512vbmi2, 7, 0, kEcx, 6, State::avx512},
    {F::avx512vnni, 7, 0, kEcx, 11, State::avx512}, {F::avx512bitalg, 7, 0, kEcx, 12, State::avx512},
    {F::avx512vpopcntdq, 7, 0, kEcx, 14, State::avx512}, {F::avx512bf16, 7, 1, kEax, 5, State::avx512},
    {F::avx512fp16, 7, 0, kEdx, 23, State::avx512}, {F::avxvnni, 7, 1, kEax, 4, State::avx},
    {F::gfni, 7, 0, kEcx, 8, State::none},          {F::vaes, 7, 0, kEcx, 9, State::avx},
    {F::vpclmulqdq, 7, 0, kEcx, 10, State::avx},
};

constexpr const char* kFeatureNames[] = {
#define LSTM_EXT_FEATURE_NAME(name) #name,
    LSTM_EXT_CPU_FEATURES(LSTM_EXT_FEATURE_NAME)
#undef LSTM_EXT_FEATURE_NAME
};
constexpr int kFeatureCount = sizeof(kFeatureNames) / sizeof(kFeatureNames[0]);
static_assert(kFeatureCount <= 64, "CpuFeatures is a 64-bit set");
static_assert(sizeof(kFeatureBits) / sizeof(kFeatureBits[0]) == kFeatureCount, "every feature has its cpuid bit");

#ifdef LSTM_EXT_X86_64
// eax, ebx, ecx, edx of cpuid(leaf, subleaf); zeros for a leaf the CPU does not have.
std::array<unsigned, 4> cpuid(unsigned leaf, unsigned subleaf) {
  std::array<unsigned, 4> r{};
#if defined(_MSC_VER) && !defined(__clang__)
  int regs[4];
  __cpuid(regs, static_cast<int>(leaf & 0x80000000u));
  if (static_cast<unsigned>(regs[0]) < leaf) return r;
  __cpuidex(regs, static_cast<int>(leaf), static_cast<int>(subleaf));
  for (int i = 0; i < 4; ++i) r[i] = static_cast<unsigned>(regs[i]);
#else
  if (__get_cpuid_max(leaf & 0x80000000u, nullptr) < leaf) return r;
  __cpuid_count(leaf, subleaf, r[0], r[1], r[2], r[3]);
#endif
  return r;
}

// XCR0: the register state the OS saves (0 when it has not enabled XSAVE for applications).
std::uint64_t xcr0() {
  if (!((cpuid(1, 0)[kEcx] >> 27) & 1)) return 0;  // OSXSAVE
#if defined(_MSC_VER) && !defined(__clang__)
  return _xgetbv(0);
#else
  unsigned eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));  // the instruction, not the intrinsic:
  return (std::uint64_t(edx) << 32) | eax;                      // this file is compiled without -mxsave
#endif
}

constexpr std::uint64_t kAvxState = 0x6;      // XMM and YMM registers
constexpr std::uint64_t kAvx512State = 0xe6;  // and the opmask, ZMM_Hi256 and Hi16_ZMM registers
#endif

}  // namespace

CpuFeatures cpu_features() {
  CpuFeatures features = 0;
#ifdef LSTM_EXT_X86_64
  const std::uint64_t saved_state = xcr0();
  const bool avx_state = (saved_state & kAvxState) == kAvxState;
  const bool avx512_state = (saved_state & kAvx512State) == kAvx512State;
  for (const FeatureBit& f : kFeatureBits) {
    const bool reported = (cpuid(f.leaf, f.subleaf)[f.reg] >> f.bit) & 1;
    const bool saved = f.state == State::none || (f.state == State::avx ? avx_state : avx512_state);
    if (reported && saved) features |= feature_bit(f.feature);
  }
#endif
  return features;
}

std::vector<std::string> feature_names(CpuFeatures features) {
  std::vector<std::string> names;
  for (int f = 0; f < kFeatureCount; ++f) {
    if ((features >> f) & 1) names.emplace_back(kFeatureNames[f]);
  }
  return names;
}

std::string environment_value(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr) return "";
  const std::string text(value);
  const char* blank = " \t\n\r\f\v";
  const std::size_t first = text.find_first_not_of(blank);
  if (first == std::string::npos) return "";
  return text.substr(first, text.find_last_not_of(blank) - first + 1);
}

}  // namespace lstm_ext
