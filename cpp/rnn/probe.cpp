// lstm_ext core: a memory probe for the benchmark's roofline (KernelLevel::read_bandwidth in
// kernels.hpp). Kernel code, compiled once per kernel level.
#include "rnn/common.hpp"
#include "rnn/kernels.hpp"

#include <chrono>
#include <vector>

namespace lstm_ext {
namespace LSTM_EXT_LEVEL {

double read_bandwidth(Index bytes, int threads, int passes, int trials) {
  using P = Packet<float>;
  using namespace Eigen::internal;
  constexpr Index L = kPacket<float>;
  const Index count = std::max<Index>(L, bytes / Index(sizeof(float)) / L * L);
  Eigen::VectorXf data = Eigen::VectorXf::Constant(count, 1.0f);  // (count) the working set
  TeamLease lease(threads);
  std::vector<float> sink(lease.size(), 0.0f);  // keeps the sums alive
  double best = 0;
  for (int trial = 0; trial < trials; ++trial) {
    const auto start = std::chrono::steady_clock::now();
    lease.run([&](Team& team) {
      const Team::Range part = team.part(count, 16 * L);
      P sum0 = pset1<P>(0), sum1 = sum0, sum2 = sum0, sum3 = sum0;  // four chains: loads, not adds, bound it
      for (int pass = 0; pass < passes; ++pass) {
        const float* p = data.data() + part.begin;
        Index j = 0;
        for (; j + 4 * L <= part.size(); j += 4 * L) {
          sum0 = padd(sum0, ploadu<P>(p + j));
          sum1 = padd(sum1, ploadu<P>(p + j + L));
          sum2 = padd(sum2, ploadu<P>(p + j + 2 * L));
          sum3 = padd(sum3, ploadu<P>(p + j + 3 * L));
        }
        for (; j < part.size(); j += L) sum0 = padd(sum0, ploadu<P>(p + j));
      }
      sink[team.rank()] = predux(padd(padd(sum0, sum1), padd(sum2, sum3)));
    });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::max(best, double(count) * sizeof(float) * passes / seconds);
  }
  volatile float keep = 0;
  for (float s : sink) keep = keep + s;
  return best;
}

}  // namespace LSTM_EXT_LEVEL
}  // namespace lstm_ext
