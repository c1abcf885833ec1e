// lstm_ext core: scratch memory that comes from a small cache of blocks earlier calls released.
//
// Pure C++17; no Python headers.
//
// Every call of a cell allocates its scratch (packed weights, gate gradients, per-step products)
// before its time loop and frees it at the end. Fresh memory costs more than its malloc: the
// kernel zeroes each new page on first touch. Measured at training (25, 16, 512), float32, 2
// threads: page faults and their zeroing took 15-20 % of a training step. So the large blocks a
// call frees go to a cache, and the next call takes the smallest cached block that is large
// enough instead of fresh memory. The cache keeps at most kScratchCacheBytes; the oldest blocks
// beyond that are freed. release_scratch_cache() frees everything it holds.
#pragma once

#include <cstddef>

namespace lstm_ext {

// The most memory the cache keeps between calls.
constexpr std::size_t kScratchCacheBytes = std::size_t(256) << 20;

// A block of at least `bytes` bytes, aligned to 64 bytes: a cached one when one is large enough,
// else a new one (std::bad_alloc when that fails). *capacity receives the block's real size.
void* acquire_scratch(std::size_t bytes, std::size_t* capacity);
// Gives a block of acquire_scratch back (to the cache, or to the system when it would overflow).
void release_scratch(void* block, std::size_t capacity) noexcept;
// Bytes the cache holds now; and freeing all of them.
std::size_t cached_scratch_bytes();
void release_scratch_cache();

}  // namespace lstm_ext
