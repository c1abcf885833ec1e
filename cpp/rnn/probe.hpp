// lstm_ext core: a memory probe for the benchmark's roofline.
//
// Pure C++17 + Eigen; no Python headers.
#pragma once

#include "rnn/common.hpp"

namespace lstm_ext {

// Bytes per second at which a team of up to `threads` threads reads a buffer of `bytes` bytes
// over and over, `passes` times, each member its own contiguous part, with SIMD loads: the
// bandwidth of whichever cache level (or memory) a working set of that size lives in. The best
// of `trials` timings.
double read_bandwidth(Index bytes, int threads, int passes, int trials);

}  // namespace lstm_ext
