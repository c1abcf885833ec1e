// lstm_ext core: the cache behind ScratchBuffer (see scratch.hpp).
#include "rnn/scratch.hpp"

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <new>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

namespace lstm_ext {
namespace {

constexpr std::size_t kAlignment = 64;
constexpr std::size_t kPage = 4096;
constexpr std::size_t kMaxBlocks = 64;  // blocks the cache keeps at most
// Only large blocks are cached (small ones come from the allocator's own free lists without
// fresh pages), and a cached block serves requests of half its size or more.
constexpr std::size_t kMinCachedBytes = 16 * kPage;

struct Block {
  void* data;
  std::size_t capacity;
};

// The cached blocks, oldest first, and their total size. The mutex lives in static storage and
// is rebuilt in a child after fork() (the parent's may have been held by another thread then);
// the child also forgets the parent's list, whose blocks stay allocated in its copy of memory.
std::vector<Block>* new_block_list() {
  auto* blocks = new std::vector<Block>();
  blocks->reserve(kMaxBlocks);  // so that adding a block never allocates
  return blocks;
}
std::vector<Block>* g_blocks = new_block_list();
std::size_t g_cached_bytes = 0;
alignas(std::mutex) unsigned char g_mutex_storage[sizeof(std::mutex)];
std::mutex* g_mutex = new (g_mutex_storage) std::mutex();

void forget_cache_in_child() {
  g_mutex = new (g_mutex_storage) std::mutex();
  g_blocks = new_block_list();
  g_cached_bytes = 0;
}

std::mutex& cache_mutex() {
#if defined(__unix__) || defined(__APPLE__)
  static const int registered = pthread_atfork(nullptr, nullptr, forget_cache_in_child);
  (void)registered;
#endif
  return *g_mutex;
}

// Blocks are whole pages (whole cache lines when small), so that similar requests fit each other's.
std::size_t rounded(std::size_t bytes) {
  const std::size_t unit = bytes >= kMinCachedBytes ? kPage : kAlignment;
  return (std::max<std::size_t>(bytes, 1) + unit - 1) / unit * unit;
}

}  // namespace

void* acquire_scratch(std::size_t bytes, std::size_t* capacity) {
  if (bytes >= kMinCachedBytes) {
    std::lock_guard<std::mutex> lock(cache_mutex());
    std::vector<Block>& blocks = *g_blocks;
    std::size_t best = blocks.size();  // the smallest block that is large enough
    for (std::size_t i = 0; i < blocks.size(); ++i) {
      const std::size_t c = blocks[i].capacity;
      if (c >= bytes && c / 2 <= bytes && (best == blocks.size() || c < blocks[best].capacity)) best = i;
    }
    if (best < blocks.size()) {
      const Block block = blocks[best];
      blocks.erase(blocks.begin() + static_cast<std::ptrdiff_t>(best));
      g_cached_bytes -= block.capacity;
      *capacity = block.capacity;
      return block.data;
    }
  }
  const std::size_t size = rounded(bytes);
  void* data = std::aligned_alloc(kAlignment, size);
  if (data == nullptr) throw std::bad_alloc();
  *capacity = size;
  return data;
}

void release_scratch(void* data, std::size_t capacity) noexcept {
  std::lock_guard<std::mutex> lock(cache_mutex());
  std::vector<Block>& blocks = *g_blocks;
  if (capacity < kMinCachedBytes || capacity > kScratchCacheBytes) {
    std::free(data);
    return;
  }
  // Room for the new block: the oldest ones go first.
  while (!blocks.empty() && (g_cached_bytes + capacity > kScratchCacheBytes || blocks.size() >= kMaxBlocks)) {
    std::free(blocks.front().data);
    g_cached_bytes -= blocks.front().capacity;
    blocks.erase(blocks.begin());
  }
  blocks.push_back({data, capacity});  // within the reserved kMaxBlocks: no allocation, no throw
  g_cached_bytes += capacity;
}

std::size_t cached_scratch_bytes() {
  std::lock_guard<std::mutex> lock(cache_mutex());
  return g_cached_bytes;
}

void release_scratch_cache() {
  std::lock_guard<std::mutex> lock(cache_mutex());
  for (const Block& block : *g_blocks) std::free(block.data);
  g_blocks->clear();  // (keeps its reserved room)
  g_cached_bytes = 0;
}

}  // namespace lstm_ext
