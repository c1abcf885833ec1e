// lstm_ext._core: the compiled core's Python module. Each cell's bindings live in their own file.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bindings/checks.hpp"
#include "rnn/cpu.hpp"
#include "rnn/kernels.hpp"
#include "rnn/parallel.hpp"
#include "rnn/scratch.hpp"

#include <stdexcept>
#include <string>
#include <vector>

namespace py = pybind11;

namespace {
py::list as_list(const std::vector<std::string>& words) {
  py::list list;
  for (const std::string& w : words) list.append(w);
  return list;
}
}  // namespace

namespace lstm_ext::bindings {
void bind_lstm(py::module_& m);
void bind_gru(py::module_& m);
void bind_rnn(py::module_& m);
void bind_dense(py::module_& m);
}

#ifndef LSTM_EXT_NATIVE_BUILD
#define LSTM_EXT_NATIVE_BUILD 0
#endif
#ifndef LSTM_EXT_SANITIZED
#define LSTM_EXT_SANITIZED 0
#endif
#ifndef LSTM_EXT_EIGEN_VERSION
#define LSTM_EXT_EIGEN_VERSION ""
#endif

PYBIND11_MODULE(_core, m) {
  // First of all, the kernel level: the best this CPU supports, or LSTM_EXT_KERNELS's. A build
  // for another CPU, or a level the CPU lacks, fails the import here, before any of its code runs.
  try {
    lstm_ext::select_kernel_level();
  } catch (const std::runtime_error& e) {
    throw py::import_error(e.what());
  }
  m.doc() = "lstm_ext's compiled core: LSTM (with projection), GRU and vanilla RNN forward and backward through time, one layer and one direction, in C++/Eigen.";
  lstm_ext::bindings::bind_lstm(m);
  lstm_ext::bindings::bind_gru(m);
  lstm_ext::bindings::bind_rnn(m);
  lstm_ext::bindings::bind_dense(m);

  m.def(
      "set_num_threads",
      [](int n) {
        if (n < 1) throw py::value_error("n: expected a number of threads >= 1, got " + std::to_string(n));
        lstm_ext::set_num_threads(n);
      },
      py::arg("n"), "Sets how many threads the core uses (>= 1), from the next call on.");
  m.def("get_num_threads", &lstm_ext::get_num_threads,
        "How many threads the core uses: set_num_threads, else LSTM_EXT_NUM_THREADS, else the CPUs this process may "
        "run on (at most its cgroup's CPU quota, rounded up).");
  m.def(
      "team_limit",
      [] {
        int limit = 0;
        lstm_ext::bindings::without_gil([&] { limit = lstm_ext::team_limit(); });  // (waits for a running call)
        return limit;
      },
      "The largest team of threads the core gives a call now: 256 (no limit beyond get_num_threads()) while the "
      "machine lets the team work, fewer after calls whose threads waited at the steps' barriers longer than the "
      "calls took (members preempted by other programs), until a later call finds the larger team worth it again.");
  m.def(
      "_set_member_delay_for_tests",
      [](int rank, long microseconds) { lstm_ext::set_member_delay_for_tests(rank, microseconds); }, py::arg("rank"),
      py::arg("microseconds"),
      "For tests: the team member of this rank sleeps this long before every barrier (0: no more), as one "
      "preempted by another program arrives late.");
  m.def("_cgroup_cpu_limit", &lstm_ext::cgroup_cpu_limit, py::arg("self_cgroup"), py::arg("root"),
        "The CPUs' worth of time the cgroups in `self_cgroup` (the text of /proc/self/cgroup) allow under the "
        "mount point `root`, 0 for no limit: what the default thread count is capped by (for the tests).");
  m.def("scratch_cache_bytes", &lstm_ext::cached_scratch_bytes,
        "Bytes of scratch memory the core keeps from earlier calls for the next ones (at most 256 MiB).");
  m.def(
      "release_scratch_cache",
      [] { lstm_ext::bindings::without_gil([] { lstm_ext::release_scratch_cache(); }); },
      "Frees the scratch memory the core keeps from earlier calls.");
  m.def(
      "read_bandwidth",
      [](long long bytes, int threads, int passes, int trials) {
        if (bytes < 1 || bytes > (1LL << 34)) {
          throw py::value_error("bytes: expected a size in [1, 2**34], got " + std::to_string(bytes));
        }
        if (threads < 1 || passes < 1 || trials < 1) {
          throw py::value_error("threads, passes, trials: expected integers >= 1, got " + std::to_string(threads) +
                                ", " + std::to_string(passes) + ", " + std::to_string(trials));
        }
        double bytes_per_second = 0;
        lstm_ext::bindings::without_gil(
            [&] { bytes_per_second = lstm_ext::kernel_level().read_bandwidth(bytes, threads, passes, trials); });
        return bytes_per_second;
      },
      py::arg("bytes"), py::arg("threads"), py::arg("passes") = 20, py::arg("trials") = 5,
      "Bytes per second at which `threads` threads read a working set of `bytes` bytes (the benchmark's roofline).");
  m.def(
      "_best_kernel_level",
      [](const std::vector<std::string>& features) -> py::object {
        lstm_ext::CpuFeatures cpu = 0;
        for (const std::string& name : features) {
          bool known = false;
          for (int f = 0; f < 64 && !known; ++f) {
            const auto names = lstm_ext::feature_names(lstm_ext::CpuFeatures(1) << f);
            if (!names.empty() && names.front() == name) {
              cpu |= lstm_ext::CpuFeatures(1) << f;
              known = true;
            }
          }
          if (!known) throw py::value_error("features: unknown CPU feature '" + name + "'");
        }
        const lstm_ext::CompiledLevel* best = lstm_ext::best_level_for(cpu);
        return best ? py::object(py::str(best->name)) : py::object(py::none());
      },
      py::arg("features"),
      "The kernel level the import would choose on a CPU with these features (names as in "
      "build_info()['cpu_features']), or None: the dispatch, for tests with the features of other CPUs.");
  m.def(
      "build_info",
      [] {
        py::dict info;
        const lstm_ext::KernelLevel& level = lstm_ext::kernel_level();
        py::dict levels;  // level name -> the CPU features it was compiled for
        for (const lstm_ext::CompiledLevel& compiled : lstm_ext::compiled_levels()) {
          levels[compiled.name] = as_list(lstm_ext::feature_names(*compiled.compiled_for));
        }
        info["kernel_level"] = std::string(level.name);
        info["kernel_levels"] = levels;
        info["cpu_features"] = as_list(lstm_ext::feature_names(lstm_ext::cpu_features()));
        info["simd"] = level.simd;
        info["int8"] = std::string(level.int8);
        info["native"] = static_cast<bool>(LSTM_EXT_NATIVE_BUILD);
        info["sanitizers"] = static_cast<bool>(LSTM_EXT_SANITIZED);
        info["eigen_version"] = std::string(LSTM_EXT_EIGEN_VERSION);
        info["compiler"] = std::string(__VERSION__);
        return info;
      },
      "How the core was built and which kernels run: kernel_level (in use), kernel_levels (compiled in, each with "
      "the CPU features it needs), cpu_features (this CPU's, as usable), simd (the instruction sets of the level in "
      "use), int8 (the instructions of its int8 products), native (built for one machine), sanitizers (built with ASan and UBSan), eigen_version, compiler.");
}
