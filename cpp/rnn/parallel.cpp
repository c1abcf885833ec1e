// lstm_ext core: the thread pool behind TeamLease (see parallel.hpp).
#include "rnn/parallel.hpp"

#include "rnn/cpu.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <fstream>
#include <new>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
#endif
#if defined(__linux__)
#include <climits>
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

namespace lstm_ext {

// -- the CPU quota of a container -----------------------------------------------------------------

namespace {

// The first line of a file, or "" when it cannot be read.
std::string first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  if (in) std::getline(in, line);
  return line;
}

// The CPU time a cgroup directory allows per unit of wall time (0: no limit, or no such files).
double cgroup_v2_limit(const std::string& dir) {
  std::istringstream max(first_line(dir + "/cpu.max"));  // "max 100000" or "150000 100000"
  std::string quota;
  double period = 0;
  if (!(max >> quota >> period) || quota == "max" || period <= 0) return 0;
  const double q = std::strtod(quota.c_str(), nullptr);
  return q > 0 ? q / period : 0;
}
double cgroup_v1_limit(const std::string& dir) {
  const double quota = std::strtod(first_line(dir + "/cpu.cfs_quota_us").c_str(), nullptr);  // -1: none
  const double period = std::strtod(first_line(dir + "/cpu.cfs_period_us").c_str(), nullptr);
  return quota > 0 && period > 0 ? quota / period : 0;
}

}  // namespace

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return in ? text.str() : std::string();
}

double cgroup_cpu_limit(const std::string& self_cgroup, const std::string& root) {
  double limit = 0;
  auto take = [&](double found) {
    if (found > 0 && (limit == 0 || found < limit)) limit = found;
  };
  // Each cgroup on the path from this process's up to the mount's root may limit it; the path
  // in /proc/self/cgroup may also name directories that a container does not show (then its own
  // limit is at the mount's root), so every ancestor is tried.
  auto walk = [&](const std::string& mount, std::string path, double (*limit_of)(const std::string&)) {
    for (;;) {
      take(limit_of(mount + path));
      if (path.empty() || path == "/") break;
      path = path.substr(0, path.find_last_of('/'));
    }
  };
  std::istringstream lines(self_cgroup);
  for (std::string line; std::getline(lines, line);) {  // "id:controllers:path"
    const auto first = line.find(':'), second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    const std::string id = line.substr(0, first), controllers = line.substr(first + 1, second - first - 1);
    const std::string path = line.substr(second + 1);
    if (id == "0" && controllers.empty()) {  // cgroup v2 (unified), mounted alone or beside v1
      walk(root, path, cgroup_v2_limit);
      walk(root + "/unified", path, cgroup_v2_limit);
    } else if (("," + controllers + ",").find(",cpu,") != std::string::npos) {  // cgroup v1
      for (const char* mount : {"/cpu", "/cpu,cpuacct", "/cpuacct,cpu"}) walk(root + mount, path, cgroup_v1_limit);
    }
  }
  return limit;
}

namespace detail {
namespace {

// How long an idle worker spins before it sleeps: long enough to bridge the Python between the
// calls of one training step, short enough not to steal a core from the next program.
constexpr auto kIdleSpin = std::chrono::microseconds(200);
// tasks() calls one team run may make.
constexpr int kMaxPhases = 32;
// The largest team a lease gives.
constexpr int kMaxTeam = 256;

// The team adapts to a shared machine (Pool::adapt). A member's time off its CPU during a run, but
// for its own sleeps at barriers until they were released (waiting for the others), is time
// another program had its CPU: the run's wall time less the thread's CPU time less those sleeps.
// (What a sleep lasts after its release is the kernel's delay in running the member again.) A run
// is wasted when its members lost more than half of the run's time so, together: they then spend
// it waiting for one another, since a member that lost its CPU holds up every barrier after it,
// and a team of one member fewer does the work sooner. Measured on a 2-CPU VM, training
// (T, B, H) = (50, 16, 256), a team of two: alone, 0.01 of a run lost (one run in 200 above a
// quarter); next to a busy process 0.81; two such processes at once 0.89. After
// kWastedRunsToShrink wasted runs in a row the pool gives teams of one member fewer; every
// probe_interval_ leases (from kFirstProbe, doubling up to kLastProbe while the probes waste too)
// one call runs with the team asked for, and a probe that is not wasted lifts the limit. Runs
// shorter than kJudgedRunNs are not judged. The results never depend on the team size (see
// parallel.hpp), so none of this changes a bit of them.
constexpr int kWastedRunsToShrink = 3;
constexpr long kFirstProbe = 16;
constexpr long kLastProbe = 1024;
constexpr std::int64_t kJudgedRunNs = 200000;

// A test hook (set_member_delay_for_tests): the member of this rank sleeps this long before it
// arrives at every barrier, as a member preempted by another program would arrive late.
std::atomic<int> g_delayed_rank{0};
// set_num_threads calls so far: a new setting lifts the adaptive team's limit (Pool::allowed).
std::atomic<unsigned> g_thread_settings{0};
std::atomic<long> g_member_delay_us{0};

std::int64_t nanoseconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count();
}
// The steady clock in ns (for times kept in atomics).
std::int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The calling thread's CPU time in ns, or -1 where the system does not tell.
std::int64_t thread_cpu_ns() {
#if defined(__unix__) || defined(__APPLE__)
  timespec now;
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now) == 0) return std::int64_t(now.tv_sec) * 1000000000 + now.tv_nsec;
#endif
  return -1;
}

// A member's clocks over its part of a run: off_cpu_ns(slept) is the time it was off its CPU but
// for `slept` ns of its own sleeps (0 where the thread's CPU time is unknown).
struct MemberClock {
  std::chrono::steady_clock::time_point wall = std::chrono::steady_clock::now();
  std::int64_t cpu = thread_cpu_ns();
  std::int64_t off_cpu_ns(std::int64_t slept) const {
    if (cpu < 0) return 0;
    return std::max<std::int64_t>(0, nanoseconds_since(wall) - (thread_cpu_ns() - cpu) - slept);
  }
};

inline void cpu_relax() {
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// How long a member waits at a barrier (or the caller for its workers) by spinning before it
// sleeps in the kernel, at least. Alone on its CPUs a team's members reach a barrier within a few
// microseconds of each other, well inside this; when the machine is shared and a member has been
// preempted, the others stop taking CPU time from it after this long.
// (LSTM_EXT_SPIN_US, read once, overrides it, and turns the adaptation below off, for experiments.)
std::chrono::microseconds spin_before_sleep() {
  static const std::chrono::microseconds spin = [] {
    if (const char* env = std::getenv("LSTM_EXT_SPIN_US")) {
      char* end = nullptr;
      const long us = std::strtol(env, &end, 10);
      if (end != env && *end == '\0' && us >= 0 && us <= 1000000) return std::chrono::microseconds(us);
    }
    return std::chrono::microseconds(-1);
  }();
  return spin;
}

// The spin window adapts, per rank of the pool's team, to how late its partners are. A member that slept is late
// at the next barrier by the time the kernel takes to run it again, which on a virtual machine
// whose idle CPUs halt is 50-200 µs (measured on a 2-CPU cloud VM after a 10-30 ms pause between
// calls). With a fixed window shorter than that, the members take turns sleeping at every
// barrier and each step pays the wake-up: there, T = 50, B = 1, H = 64 took 3.9 ms instead of
// 0.2 ms. So a wait that ended after the window but within kSpinCeiling widens the window to
// twice that wait (at most kSpinCeiling), which ends the cycle after one step; a wait longer than
// kSpinCeiling (a partner that lost its CPU to another program for a time slice) resets it,
// since spinning would only take that CPU time from the program that has it; a wait that
// spinning covered lets the window shrink by 1/16 towards kSpinFloor. The ceiling covers the
// wake-ups measured (60-90 µs) and keeps the spinning short on a shared machine, where a longer
// one only delays the program whose CPU the partner lost.
// (The pool keeps the windows, one per rank, not a thread_local: LeakSanitizer's tracer crashed
// reading the extension's dynamic TLS at exit.)
constexpr long kSpinCeiling = 200;  // µs
static_assert(Team::kSpinFloorMicroseconds < kSpinCeiling, "the window can widen");
// A member that has just woken a sleeping partner waits for it at the next barrier by spinning
// at least this long: that partner is coming, late by its wake-up, which on a VM now and then
// takes longer than kSpinCeiling; a shorter spin would put this member to sleep in turn, and with
// every wake-up that slow the two took turns sleeping at every barrier of a call (measured, 2-CPU
// cloud VM: calls of T = 50, B = 1 taking 7-11 ms instead of 0.3-0.9 ms, a whole configuration
// of the grid at a time). Paid at most once per sleep, so bounded on a shared machine too.
constexpr long kWokenPartnerSpin = 500;  // µs

#if defined(__linux__)
void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t value) {
  // Returns at once when word != value; spurious returns are fine (the callers loop).
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT_PRIVATE, value, nullptr, nullptr, 0);
}
void futex_wake_all(std::atomic<std::uint32_t>& word) {
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
}
#endif

// Waits while `word` holds `value`: spins (pausing) for the spin window (`window`, µs, adapted
// above; `at_least` µs this time when that is more), then sleeps on a futex, counted in
// `sleepers`, until a wake_waiters() after the word changed. Where there is no futex the wait
// yields its CPU instead of sleeping.
// With `slept_ns`, adds to it the time this wait slept before the word was changed, which the
// changer wrote to `released_at` (steady_ns) before changing it: what the wait slept after that
// was the kernel's delay in running it again (on a shared machine, time another program had its
// CPU), not waiting for its partners.
void wait_while_equal(std::atomic<std::uint32_t>& word, std::uint32_t value, std::atomic<int>& sleepers,
                      long& window, long at_least = 0, std::int64_t* slept_ns = nullptr,
                      const std::atomic<std::int64_t>* released_at = nullptr) {
  constexpr long kSpinFloor = Team::kSpinFloorMicroseconds;
  if (word.load(std::memory_order_acquire) != value) return;
  window = std::max(window, kSpinFloor);
  const auto start = std::chrono::steady_clock::now();
  const auto fixed = spin_before_sleep();
  const auto spin = fixed.count() >= 0 ? fixed : std::chrono::microseconds(std::max(window, at_least));
  bool slept = false;
  for (int spins = 1; word.load(std::memory_order_acquire) == value; ++spins) {
    cpu_relax();
    if ((spins & 63) == 0 && std::chrono::steady_clock::now() - start >= spin) break;
  }
  const std::int64_t sleep_start = steady_ns();
  while (word.load(std::memory_order_acquire) == value) {
    slept = true;
#if defined(__linux__)
    // seq_cst on both sides (here and in wake_waiters) so that either the waker sees this
    // sleeper or the sleeper sees the new value (futex_wait returns at once when word != value).
    sleepers.fetch_add(1, std::memory_order_seq_cst);
    if (word.load(std::memory_order_seq_cst) == value) futex_wait(word, value);
    sleepers.fetch_sub(1, std::memory_order_seq_cst);
#else
    (void)sleepers;
    std::this_thread::yield();
#endif
  }
  if (slept && slept_ns != nullptr && released_at != nullptr) {
    *slept_ns += std::max<std::int64_t>(0, released_at->load(std::memory_order_relaxed) - sleep_start);
  }
  if (fixed.count() >= 0) return;
  if (slept) {
    const long waited = static_cast<long>(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count());
    window = waited < kSpinCeiling ? std::min(kSpinCeiling, std::max(window, 2 * waited)) : kSpinFloor;
  } else {
    window = std::max(kSpinFloor, window - window / 16);
  }
}

// After changing `word`: wakes whoever sleeps in wait_while_equal on it.
void wake_waiters(std::atomic<std::uint32_t>& word, std::atomic<int>& sleepers) {
#if defined(__linux__)
  if (sleepers.load(std::memory_order_seq_cst) > 0) futex_wake_all(word);
#else
  (void)word, (void)sleepers;
#endif
}

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
// Returns the CPU it was pinned to, or -1.
int pin_worker(std::thread& worker, int rank, int team) {
#if defined(__linux__)
  if (environment_value("LSTM_EXT_PIN_THREADS") == "0") return -1;  // (checked at import: "0" or "1")
  const std::vector<int> cpus = allowed_cpus();
  if (cpus.size() < 2 || team < static_cast<int>(cpus.size())) return -1;
  const int cpu = cpus[rank % cpus.size()];
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(worker.native_handle(), sizeof(set), &set) == 0 ? cpu : -1;  // a refusal is harmless
#else
  (void)worker, (void)rank, (void)team;
  return -1;
#endif
}

// While a team runs, keeps its caller (rank 0, the user's thread, never pinned) off the CPUs of
// its pinned workers: left to the scheduler, the caller was sometimes on a worker's CPU, the two
// taking turns on one CPU while the other idled, until the load balancer moved it. Measured on a
// 2-CPU VM, a training call at (1, 32, 64) right after torch's calls (whose OpenMP thread had run
// on the other CPU): the backward took 1.5-1.6 ms instead of 0.3-0.4 ms. The caller's affinity
// is narrowed only when it sits on a worker's CPU, and restored when the team is done.
class CallerOffWorkers {
 public:
  // worker_cpus[0, count): the CPUs of the team's workers, -1 for one not pinned.
  CallerOffWorkers(const int* worker_cpus, int count) {
#if defined(__linux__)
    const int cpu = sched_getcpu();
    if (cpu < 0 || std::find(worker_cpus, worker_cpus + count, cpu) == worker_cpus + count) return;
    if (pthread_getaffinity_np(pthread_self(), sizeof(saved_), &saved_) != 0) return;
    cpu_set_t rest = saved_;
    for (int k = 0; k < count; ++k) {
      if (worker_cpus[k] >= 0) CPU_CLR(worker_cpus[k], &rest);
    }
    if (CPU_COUNT(&rest) == 0) return;
    moved_ = pthread_setaffinity_np(pthread_self(), sizeof(rest), &rest) == 0;
#else
    (void)worker_cpus, (void)count;
#endif
  }
  ~CallerOffWorkers() {
#if defined(__linux__)
    if (moved_) pthread_setaffinity_np(pthread_self(), sizeof(saved_), &saved_);
#endif
  }
  CallerOffWorkers(const CallerOffWorkers&) = delete;
  CallerOffWorkers& operator=(const CallerOffWorkers&) = delete;

 private:
  bool moved_ = false;
#if defined(__linux__)
  cpu_set_t saved_;
#endif
};

int default_num_threads() {
  const std::string env = environment_value("LSTM_EXT_NUM_THREADS");
  if (!env.empty()) {
    char* end = nullptr;
    const long n = std::strtol(env.c_str(), &end, 10);
    if (end != env.c_str() && *end == '\0' && n >= 1 && n <= 4096) return static_cast<int>(n);
  }
  int cpus = available_cpus();
#if defined(__linux__)
  const double quota = lstm_ext::cgroup_cpu_limit(read_file("/proc/self/cgroup"), "/sys/fs/cgroup");
  if (quota > 0) cpus = std::min(cpus, std::max(1, static_cast<int>(std::ceil(quota - 1e-9))));
#endif
  return cpus;
}


}  // namespace

// What the members of one team share: the barrier and the task counters of each tasks() call.
struct TeamState {
  explicit TeamState(int members) : size(members) {
    for (auto& counter : next_task) counter.store(0, std::memory_order_relaxed);
  }
  const int size;
  alignas(64) std::atomic<std::int64_t> off_cpu_ns{0};  // the members' time off their CPUs (MemberClock), summed
  alignas(64) std::atomic<int> arrived{0};
  alignas(64) std::atomic<std::uint32_t> generation{0};  // barriers completed (wraps; only change matters)
  std::atomic<std::int64_t> released_at{0};              // steady_ns when the last barrier was released
  std::atomic<int> sleepers{0};                          // members asleep on generation
  alignas(64) std::atomic<std::ptrdiff_t> next_task[kMaxPhases];
};

// Persistent workers, ranks 1..; the caller of run() is rank 0. One job at a time (in_use).
class Pool {
 public:
  std::mutex in_use;  // held by the lease that runs a team
  // The thread that holds in_use (its rank 0), so that a lease asked for inside a running team's
  // body on that thread gets a team of one: locking a mutex one holds already is undefined.
  std::atomic<std::thread::id> holder{};

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
      worker_cpus_.assign(workers_.size(), -1);
      for (std::size_t k = 0; k < workers_.size(); ++k) {
        worker_cpus_[k] = pin_worker(workers_[k], static_cast<int>(k) + 1, static_cast<int>(workers_.size()) + 1);
      }
    }
    return static_cast<int>(workers_.size());
  }

  // Workers asleep waiting for a job (they spun for kIdleSpin after their last one).
  int asleep() const { return sleepers_.load(std::memory_order_relaxed); }

  // With in_use held and ensure_workers(size - 1) done: body on `size` members.
  void run(int size, const std::function<void(Team&)>& body) {
    TeamState state(size);
    body_ = &body;
    state_ = &state;
    running_.store(static_cast<std::uint32_t>(size - 1), std::memory_order_relaxed);
    // Publish the job: its epoch and size in one word, so that a worker reads them together.
    epoch_ += 1;
    job_word_.store((epoch_ << kSizeBits) | static_cast<std::uint64_t>(size), std::memory_order_seq_cst);
    const bool woke = sleepers_.load(std::memory_order_seq_cst) > 0;
    if (woke) {
      std::lock_guard<std::mutex> lock(sleep_mutex_);
      wake_.notify_all();
    }
    const MemberClock clock;
    {
      const CallerOffWorkers off(worker_cpus_.data(), size - 1);
      Team self(&state, 0, size, &spin_windows_[0]);
      self.woke_partner_ = woke;
      body(self);
      for (std::uint32_t left = running_.load(std::memory_order_acquire); left != 0;
           left = running_.load(std::memory_order_acquire)) {
        wait_while_equal(running_, left, running_sleepers_, spin_windows_[0], 0, &self.slept_ns_, &finished_at_);
      }
      state.off_cpu_ns.fetch_add(clock.off_cpu_ns(self.slept_ns_), std::memory_order_relaxed);
    }
    adapt(size, nanoseconds_since(clock.wall), state.off_cpu_ns.load(std::memory_order_acquire));
  }

  // With in_use held: the members a lease asking for `wanted` gets now (see kWastedRunsToShrink):
  // `wanted`, or fewer while the pool limits its teams, but `wanted` for a probe.
  int allowed(int wanted) {
    const unsigned settings = g_thread_settings.load(std::memory_order_relaxed);
    if (settings != settings_seen_) {  // set_num_threads since: start afresh
      settings_seen_ = settings;
      cap_ = kMaxTeam;
      wasted_runs_ = 0;
      probe_interval_ = kFirstProbe;
      probing_ = false;
    }
    if (wanted <= cap_ || !adapts_) return wanted;
    if (--leases_to_probe_ <= 0) {
      probing_ = true;
      return wanted;
    }
    return cap_;
  }

  // The largest team the pool gives now (kMaxTeam: no limit).
  int cap() const { return cap_; }

 private:
  // After a run of `size` members that took `run_ns`, in which they were off their CPUs for
  // `off_cpu_ns` in all (MemberClock).
  void adapt(int size, std::int64_t run_ns, std::int64_t off_cpu_ns) {
    if (!adapts_) return;
    if (run_ns < kJudgedRunNs) {
      probing_ = false;  // (a probe too short to judge: the next one will tell)
      return;
    }
    const bool wasted = 2 * off_cpu_ns > run_ns;
    if (probing_) {
      probing_ = false;
      if (wasted) {
        probe_interval_ = std::min(kLastProbe, 2 * probe_interval_);
        leases_to_probe_ = probe_interval_;
      } else {
        cap_ = kMaxTeam;
        probe_interval_ = kFirstProbe;
      }
      wasted_runs_ = 0;
      return;
    }
    wasted_runs_ = wasted ? wasted_runs_ + 1 : 0;
    if (wasted_runs_ >= kWastedRunsToShrink) {
      cap_ = std::max(1, size - 1);
      wasted_runs_ = 0;
      leases_to_probe_ = probe_interval_;
    }
  }

 public:

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
        const MemberClock clock;
        Team team(state_, rank, size, &spin_windows_[rank]);
        (*body_)(team);
        state_->off_cpu_ns.fetch_add(clock.off_cpu_ns(team.slept_ns_), std::memory_order_relaxed);
        // the last worker to finish sets finished_at_ (the latest of their times)
        const std::int64_t now = steady_ns();
        for (std::int64_t seen = finished_at_.load(std::memory_order_relaxed);
             seen < now && !finished_at_.compare_exchange_weak(seen, now, std::memory_order_relaxed);) {
        }
        if (running_.fetch_sub(1, std::memory_order_acq_rel) == 1) wake_waiters(running_, running_sleepers_);
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
  std::vector<int> worker_cpus_;      // the CPU worker k (rank k + 1) is pinned to; -1: not pinned
  // Each rank's barrier spin window (wait_while_equal), kept from one run to the next; rank r's is
  // only used by the member of rank r.
  long spin_windows_[kMaxTeam] = {};  // 0: not used yet (read as the floor)
  std::uint64_t epoch_ = 0;           // jobs published so far (written by the lease holder only)
  std::atomic<std::uint64_t> job_word_{0};  // (epoch << kSizeBits) | team size of the newest job
  const std::function<void(Team&)>* body_ = nullptr;
  TeamState* state_ = nullptr;
  alignas(64) std::atomic<std::uint32_t> running_{0};  // members other than rank 0 still working
  std::atomic<std::int64_t> finished_at_{0};            // steady_ns when the last of them finished
  std::atomic<int> running_sleepers_{0};                // 0 or 1: rank 0 asleep on running_
  std::mutex sleep_mutex_;
  std::condition_variable wake_;
  std::atomic<int> sleepers_{0};
  // The adaptive team (adapt, allowed), read and written with in_use held.
  int cap_ = kMaxTeam;                 // the largest team the pool gives now
  int wasted_runs_ = 0;                // wasted runs in a row
  long probe_interval_ = kFirstProbe;  // leases between probes of the team asked for
  long leases_to_probe_ = 0;           // leases left before the next probe, while limited
  bool probing_ = false;               // the run now is a probe
  unsigned settings_seen_ = 0;         // g_thread_settings when last read
  // LSTM_EXT_ADAPT_TEAM=0 turns the adaptation off (checked at import: "0" or "1").
  const bool adapts_ = environment_value("LSTM_EXT_ADAPT_TEAM") != "0";
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

void set_num_threads(int n) {
  detail::g_num_threads.store(n < 1 ? 1 : n, std::memory_order_relaxed);
  detail::g_thread_settings.fetch_add(1, std::memory_order_relaxed);  // the adaptive team starts afresh
}

void Team::barrier() {
  if (size_ == 1) return;
  if (rank_ == detail::g_delayed_rank.load(std::memory_order_relaxed)) {
    const long delay = detail::g_member_delay_us.load(std::memory_order_relaxed);
    if (delay > 0) std::this_thread::sleep_for(std::chrono::microseconds(delay));
  }
  detail::TeamState& s = *state_;
  const std::uint32_t generation = s.generation.load(std::memory_order_acquire);
  if (s.arrived.fetch_add(1, std::memory_order_acq_rel) + 1 == size_) {
    s.arrived.store(0, std::memory_order_relaxed);
    s.released_at.store(detail::steady_ns(), std::memory_order_relaxed);
    s.generation.store(generation + 1, std::memory_order_seq_cst);
    woke_partner_ = s.sleepers.load(std::memory_order_seq_cst) > 0;
    detail::wake_waiters(s.generation, s.sleepers);
  } else {
    detail::wait_while_equal(s.generation, generation, s.sleepers, *spin_window_,
                             woke_partner_ ? detail::kWokenPartnerSpin : 0, &slept_ns_, &s.released_at);
    woke_partner_ = false;
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

TeamLease::TeamLease(int wanted, double call_flops) {
  wanted = std::min(wanted, detail::kMaxTeam);
  if (wanted <= 1) return;
  detail::Pool* p = detail::pool();
  if (p->holder.load(std::memory_order_relaxed) == std::this_thread::get_id()) return;  // inside a team: alone
  if (call_flops > 0 && call_flops < kWakeWorthFlops && p->asleep() > 0) return;  // not worth a wake-up
  std::unique_lock<std::mutex> lock(p->in_use, std::try_to_lock);
  if (!lock.owns_lock()) return;  // another call has the pool (or this is one of its members): alone
  wanted = p->allowed(wanted);
  if (wanted <= 1) return;
  const int members = std::min(wanted, p->ensure_workers(wanted - 1) + 1);
  if (members <= 1) return;
  pool_ = p;
  hold_ = std::move(lock);
  size_ = members;
  p->holder.store(std::this_thread::get_id(), std::memory_order_relaxed);
}

TeamLease::~TeamLease() {
  if (pool_ != nullptr) pool_->holder.store(std::thread::id(), std::memory_order_relaxed);
}

int team_limit() {
  detail::Pool* p = detail::pool();
  std::lock_guard<std::mutex> lock(p->in_use);
  return p->cap();
}

void set_member_delay_for_tests(int rank, long microseconds) {
  detail::g_delayed_rank.store(rank, std::memory_order_relaxed);
  detail::g_member_delay_us.store(std::max(0L, microseconds), std::memory_order_relaxed);
}

void run_directions(int directions, double recurrent_weight_bytes, const std::function<void(int)>& direction) {
  if (directions == 2 && get_num_threads() == 2 && recurrent_weight_bytes <= kTogetherMaxBytes) {
    TeamLease lease(2);
    if (lease.size() == 2) {
      lease.run([&](Team& team) { direction(team.rank()); });
      return;
    }
  }
  for (int k = 0; k < directions; ++k) direction(k);
}

void TeamLease::run(const std::function<void(Team&)>& body) {
  if (pool_ == nullptr) {
    detail::TeamState state(1);
    Team self(&state, 0, 1, nullptr);  // a team of one never waits
    body(self);
    return;
  }
  pool_->run(size_, body);
}

}  // namespace lstm_ext
