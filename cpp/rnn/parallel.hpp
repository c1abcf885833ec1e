// lstm_ext core: the thread team every kernel runs on.
//
// Pure C++17; no Python headers.
//
// One pool of persistent worker threads serves the whole process. A kernel leases a team from
// it (the calling thread is rank 0, pool workers are ranks 1..size-1), allocates what it needs
// for that team size, and runs one body on every member. Members meet at `barrier()` and share
// independent tasks with `tasks()` (dynamic, first come first served). A barrier spins first (a
// recurrent time step is a few microseconds, too short for a kernel sleep when the team has its
// CPUs to itself), then sleeps on a futex: when the machine is shared and a member has been
// preempted, the members waiting for it give their CPUs back instead of spinning on them.
//
// Results never depend on the team size: every kernel splits its work so that each output
// element is computed by the same instructions whichever member computes it. So a team of one
// (what a lease gives when another call holds the pool, e.g. from a second Python thread) gives
// the same bits as a team of many.
//
// Idle workers spin for a short while (so that the calls of a training step find them awake),
// then sleep on a condition variable. After fork() the child starts with no pool and builds a
// new one on first use.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

namespace lstm_ext {

// Threads a kernel may use (>= 1). The default is the number of CPUs this process may run on
// (its affinity mask, and at most the CPU quota of its container's cgroup, rounded up), or the
// environment variable LSTM_EXT_NUM_THREADS when it holds a positive integer.
int get_num_threads();
// Sets it (n >= 1; smaller values are taken as 1). Takes effect at the next kernel call.
void set_num_threads(int n);

// The CPUs' worth of time the cgroups of a process allow it (e.g. 1.5), the smallest limit on
// the path from its cgroup up to the root, cgroup v2 (cpu.max) or v1 (cpu.cfs_quota_us over
// cpu.cfs_period_us); 0 when none is set. `self_cgroup`: the text of /proc/self/cgroup; `root`:
// where the cgroup file systems are mounted (/sys/fs/cgroup).
double cgroup_cpu_limit(const std::string& self_cgroup, const std::string& root);
// A file's text ("" when it cannot be read).
std::string read_file(const std::string& path);

namespace detail {
struct TeamState;  // what the members of one team share
class Pool;
}  // namespace detail

// A contiguous range [begin, end) of items.
struct ItemRange {
  std::ptrdiff_t begin, end;
  std::ptrdiff_t size() const { return end - begin; }
};

// Part `part` of `parts` of `count` items: contiguous, as even as split points on multiples of
// `granule` allow (the last part ends at `count`). Parts may be empty.
ItemRange split_part(std::ptrdiff_t count, std::ptrdiff_t granule, int parts, int part);

// One member's view of a running team.
class Team {
 public:
  int rank() const { return rank_; }
  int size() const { return size_; }

  // Waits until every member has arrived (spinning, then sleeping). Memory written before it is
  // visible after it.
  void barrier();

  // The part of `count` items this member owns: split_part(count, granule, size(), rank()).
  using Range = ItemRange;
  Range part(std::ptrdiff_t count, std::ptrdiff_t granule = 1) const {
    return split_part(count, granule, size_, rank_);
  }

  // Runs task(i) for i in [0, count), each once, spread over the members as they come free.
  // Every member must call it (with the same count); it does not wait for the others.
  template <typename Task>
  void tasks(std::ptrdiff_t count, Task&& task) {
    std::atomic<std::ptrdiff_t>& next = next_task_counter();
    for (std::ptrdiff_t i = next.fetch_add(1, std::memory_order_relaxed); i < count;
         i = next.fetch_add(1, std::memory_order_relaxed)) {
      task(i);
    }
  }

 private:
  friend class detail::Pool;
  friend class TeamLease;
  Team(detail::TeamState* state, int rank, int size, long* spin_window)
      : state_(state), rank_(rank), size_(size), spin_window_(spin_window) {}
  std::atomic<std::ptrdiff_t>& next_task_counter();

  detail::TeamState* state_;
  int rank_, size_;
  int phase_ = 0;  // how many tasks() calls this member has made

 public:
  static constexpr long kSpinFloorMicroseconds = 50;  // the barrier's shortest spin (parallel.cpp)

 private:
  long* spin_window_;  // µs this member spins at a barrier before it sleeps: its rank's, kept by the pool
  // Whether this member woke a sleeping partner (releasing a barrier, or publishing the job): that
  // partner reaches the next barrier late by its wake-up, so this member's next wait spins for
  // at least kWokenPartnerSpin (parallel.cpp) before it sleeps.
  bool woke_partner_ = false;
  // ns this member slept at barriers (not spinning) in this run: not time taken from it by other
  // programs (the adaptive team, parallel.cpp).
  std::int64_t slept_ns_ = 0;
};

// The right to run one team. Holding a lease of size > 1 keeps the pool for this call; when the
// pool is busy (another thread's call), or one thread is wanted, the lease has size 1 and runs
// the body on the calling thread alone.
class TeamLease {
 public:
  // `call_flops`, when known (> 0), is the whole call's work: a call of less than kWakeWorthFlops
  // runs alone when the pool's workers have gone to sleep (after a pause between calls), since
  // waking one (60-90 µs measured on a cloud VM) costs more than it would save, at most half of
  // the call (~40 µs on one core). Workers still spinning from the last call join as usual.
  static constexpr double kWakeWorthFlops = 4e6;
  explicit TeamLease(int wanted, double call_flops = 0.0);
  ~TeamLease();
  TeamLease(const TeamLease&) = delete;
  TeamLease& operator=(const TeamLease&) = delete;

  int size() const { return size_; }
  // Runs body(team) on every member and returns when all have finished. The body must not throw.
  void run(const std::function<void(Team&)>& body);

 private:
  detail::Pool* pool_ = nullptr;
  std::unique_lock<std::mutex> hold_;
  int size_ = 1;
};

// The largest team a lease gives now: get_num_threads() and more while the machine lets the team
// work (kMaxTeam, 256), fewer after its runs have wasted their members' time waiting at barriers
// for members preempted by other programs (parallel.cpp, kWastedRunsToShrink), until a probe
// finds the larger team worth it again; set_num_threads lifts the limit.
int team_limit();
// For tests: the member of rank `rank` sleeps `microseconds` before it arrives at every barrier
// (0: no more), as a member preempted by another program arrives late.
void set_member_delay_for_tests(int rank, long microseconds);

// Runs direction(k) for the `directions` (1 or 2) directions of a bidirectional layer. On a team
// of two, when one direction's recurrent weights take at most kTogetherMaxBytes, both at once,
// one per member, each a call that then runs alone on its thread (a lease asked for inside a
// team's body has size 1): no barrier per step. Otherwise one after the other, each with the
// whole team: with larger weights each member then reads half of one direction's weights per
// step instead of all of its own (measured, AMD EPYC, float32, B = 1-4: at H = 1024 at once took
// 1.3-1.6x as long; at H <= 512 at once was 1.0-1.7x faster). Each direction's results are the
// same bits either way (see above).
constexpr double kTogetherMaxBytes = 4.0 * 1024 * 1024;
void run_directions(int directions, double recurrent_weight_bytes, const std::function<void(int)>& direction);

}  // namespace lstm_ext
