// lstm_ext core: the thread pool behind TeamLease (see parallel.hpp).
#include "rnn/parallel.hpp"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <new>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
#endif
#if defined(__linux__)
#include <sched.h>
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

namespace lstm_ext {
namespace detail {
namespace {

// How long an idle worker spins before it sleeps: long enough to bridge the Python between the
// calls of one training step, short enough not to steal a core from the next program.
constexpr auto kIdleSpin = std::chrono::microseconds(200);
// How many times a barrier spins before it starts yielding its core (more threads than cores).
constexpr int kSpinsBeforeYield = 1 << 14;
// tasks() calls one team run may make.
constexpr int kMaxPhases = 32;
// The largest team a lease gives.
constexpr int kMaxTeam = 256;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Busy-waits politely: pauses first, then yields the core to whoever needs it.
struct Spinner {
  int spins = 0;
  void wait() {
    if (++spins < kSpinsBeforeYield) {
      cpu_relax();
    } else {
      std::this_thread::yield();
    }
  }
};

int available_cpus() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return CPU_COUNT(&set);
#endif
  const unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? static_cast<int>(n) : 1;
}

// The CPUs this process may run on, in order (empty where the system does not say).
std::vector<int> allowed_cpus() {
  std::vector<int> cpus;
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
      if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
    }
  }
#endif
  return cpus;
}

// Pins worker `rank` to the rank-th allowed CPU when the team covers every CPU this process may
// use (and LSTM_EXT_PIN_THREADS is not 0). Measured on a 2-CPU virtual machine: unpinned, a
// worker woken after a pause now and then shared the caller's CPU until the scheduler moved it,
// which made one call in three take three times as long; pinned, none did. A process that uses
// fewer threads than CPUs (e.g. one of several) is left to the scheduler.
void pin_worker(std::thread& worker, int rank, int team) {
#if defined(__linux__)
  const char* env = std::getenv("LSTM_EXT_PIN_THREADS");
  if (env != nullptr && std::string(env) == "0") return;
  const std::vector<int> cpus = allowed_cpus();
  if (cpus.size() < 2 || team < static_cast<int>(cpus.size())) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpus[rank % cpus.size()], &set);
  pthread_setaffinity_np(worker.native_handle(), sizeof(set), &set);  // best effort: a refusal is harmless
#else
  (void)worker, (void)rank, (void)team;
#endif
}

int default_num_threads() {
  if (const char* env = std::getenv("LSTM_EXT_NUM_THREADS")) {
    char* end = nullptr;
    const long n = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && n >= 1 && n <= 4096) return static_cast<int>(n);
  }
  return available_cpus();
}

}  // namespace

// What the members of one team share: the barrier and the task counters of each tasks() call.
struct TeamState {
  explicit TeamState(int members) : size(members) {
    for (auto& counter : next_task) counter.store(0, std::memory_order_relaxed);
  }
  const int size;
  alignas(64) std::atomic<int> arrived{0};
  alignas(64) std::atomic<std::uint64_t> generation{0};
  alignas(64) std::atomic<std::ptrdiff_t> next_task[kMaxPhases];
};

// Persistent workers, ranks 1..; the caller of run() is rank 0. One job at a time (in_use).
class Pool {
 public:
  std::mutex in_use;  // held by the lease that runs a team

  // With in_use held: tries to have at least `count` workers; returns how many there are (fewer
  // when the system refuses more threads).
  int ensure_workers(int count) {
    const bool grew = static_cast<int>(workers_.size()) < count;
    try {
      while (static_cast<int>(workers_.size()) < count) {
        const int rank = static_cast<int>(workers_.size()) + 1;
        const std::uint64_t epoch = job_word_.load(std::memory_order_acquire) >> kSizeBits;
        workers_.emplace_back([this, rank, epoch] { work(rank, epoch); });
      }
    } catch (const std::exception&) {
      // No more threads: make do with those there are.
    }
    if (grew) {
      for (std::size_t k = 0; k < workers_.size(); ++k) {
        pin_worker(workers_[k], static_cast<int>(k) + 1, static_cast<int>(workers_.size()) + 1);
      }
    }
    return static_cast<int>(workers_.size());
  }

  // With in_use held and ensure_workers(size - 1) done: body on `size` members.
  void run(int size, const std::function<void(Team&)>& body) {
    TeamState state(size);
    body_ = &body;
    state_ = &state;
    running_.store(size - 1, std::memory_order_relaxed);
    // Publish the job: its epoch and size in one word, so that a worker reads them together.
    epoch_ += 1;
    job_word_.store((epoch_ << kSizeBits) | static_cast<std::uint64_t>(size), std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      std::lock_guard<std::mutex> lock(sleep_mutex_);
      wake_.notify_all();
    }
    Team self(&state, 0, size);
    body(self);
    Spinner spin;
    while (running_.load(std::memory_order_acquire) != 0) spin.wait();
  }

 private:
  static constexpr int kSizeBits = 16;

  void work(int rank, std::uint64_t seen) {
#if defined(__linux__)
    pthread_setname_np(pthread_self(), "lstm_ext worker");  // as seen by top -H, gdb, /proc
#endif
    for (;;) {
      std::uint64_t word = wait_for_job(seen);
      seen = word >> kSizeBits;
      const int size = static_cast<int>(word & ((1u << kSizeBits) - 1));
      if (rank < size) {
        Team team(state_, rank, size);
        (*body_)(team);
        running_.fetch_sub(1, std::memory_order_release);
      }
    }
  }

  // Spins, then sleeps, until a job newer than epoch `seen` is published; returns its word.
  std::uint64_t wait_for_job(std::uint64_t seen) {
    const auto start = std::chrono::steady_clock::now();
    for (int spins = 1;; ++spins) {
      const std::uint64_t word = job_word_.load(std::memory_order_acquire);
      if ((word >> kSizeBits) != seen) return word;
      cpu_relax();
      if ((spins & 1023) == 0 && std::chrono::steady_clock::now() - start > kIdleSpin) break;
    }
    std::unique_lock<std::mutex> lock(sleep_mutex_);
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    wake_.wait(lock, [&] { return (job_word_.load(std::memory_order_seq_cst) >> kSizeBits) != seen; });
    sleepers_.fetch_sub(1, std::memory_order_relaxed);
    return job_word_.load(std::memory_order_acquire);
  }

  std::vector<std::thread> workers_;  // never joined: the pool lives as long as the process
  std::uint64_t epoch_ = 0;           // jobs published so far (written by the lease holder only)
  std::atomic<std::uint64_t> job_word_{0};  // (epoch << kSizeBits) | team size of the newest job
  const std::function<void(Team&)>* body_ = nullptr;
  TeamState* state_ = nullptr;
  alignas(64) std::atomic<int> running_{0};  // members other than rank 0 still working
  std::mutex sleep_mutex_;
  std::condition_variable wake_;
  std::atomic<int> sleepers_{0};
};

namespace {

// The process's pool, built on first use. It is never destroyed (its workers run until the
// process ends); after fork() the child forgets it and builds its own.
std::atomic<Pool*> g_pool{nullptr};
alignas(std::mutex) unsigned char g_pool_mutex_storage[sizeof(std::mutex)];
std::mutex* g_pool_mutex = new (g_pool_mutex_storage) std::mutex();
std::atomic<int> g_num_threads{0};  // 0 = not read yet

void forget_pool_in_child() {
  g_pool.store(nullptr);
  g_pool_mutex = new (g_pool_mutex_storage) std::mutex();  // the parent's may have been locked
}

Pool* pool() {
  Pool* p = g_pool.load(std::memory_order_acquire);
  if (p != nullptr) return p;
  std::lock_guard<std::mutex> lock(*g_pool_mutex);
  p = g_pool.load(std::memory_order_acquire);
  if (p == nullptr) {
#if defined(__unix__) || defined(__APPLE__)
    static const int registered = pthread_atfork(nullptr, nullptr, forget_pool_in_child);
    (void)registered;
#endif
    p = new Pool();
    g_pool.store(p, std::memory_order_release);
  }
  return p;
}

}  // namespace
}  // namespace detail

// ---------------------------------------------------------------------------------------------
int get_num_threads() {
  int n = detail::g_num_threads.load(std::memory_order_relaxed);
  if (n == 0) {
    n = detail::default_num_threads();
    int expected = 0;
    if (!detail::g_num_threads.compare_exchange_strong(expected, n)) n = expected;
  }
  return n;
}

void set_num_threads(int n) { detail::g_num_threads.store(n < 1 ? 1 : n, std::memory_order_relaxed); }

void Team::barrier() {
  if (size_ == 1) return;
  detail::TeamState& s = *state_;
  const std::uint64_t generation = s.generation.load(std::memory_order_acquire);
  if (s.arrived.fetch_add(1, std::memory_order_acq_rel) + 1 == size_) {
    s.arrived.store(0, std::memory_order_relaxed);
    s.generation.store(generation + 1, std::memory_order_release);
  } else {
    detail::Spinner spin;
    while (s.generation.load(std::memory_order_acquire) == generation) spin.wait();
  }
}

ItemRange split_part(std::ptrdiff_t count, std::ptrdiff_t granule, int parts, int part) {
  const std::ptrdiff_t granules = (count + granule - 1) / granule;
  auto point = [&](int p) { return std::min(count, granules * p / parts * granule); };
  return {point(part), point(part + 1)};
}

std::atomic<std::ptrdiff_t>& Team::next_task_counter() {
  if (phase_ >= detail::kMaxPhases) std::abort();  // a kernel bug, not an input error
  return state_->next_task[phase_++];
}

TeamLease::TeamLease(int wanted) {
  wanted = std::min(wanted, detail::kMaxTeam);
  if (wanted <= 1) return;
  detail::Pool* p = detail::pool();
  std::unique_lock<std::mutex> lock(p->in_use, std::try_to_lock);
  if (!lock.owns_lock()) return;  // another call has the pool: run on this thread alone
  const int members = std::min(wanted, p->ensure_workers(wanted - 1) + 1);
  if (members <= 1) return;
  pool_ = p;
  hold_ = std::move(lock);
  size_ = members;
}

TeamLease::~TeamLease() = default;

void TeamLease::run(const std::function<void(Team&)>& body) {
  if (pool_ == nullptr) {
    detail::TeamState state(1);
    Team self(&state, 0, 1);
    body(self);
    return;
  }
  pool_->run(size_, body);
}

}  // namespace lstm_ext
