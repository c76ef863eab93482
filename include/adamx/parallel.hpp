// How the element passes are spread over threads: optional OpenMP (define
// ADAMX_OPENMP and compile with -fopenmp; the CMake option ADAMX_OPENMP does
// both). Work is split on s-block boundaries and every block writes its own
// partial, so the result is bitwise the same for any thread count.
#pragma once

#include <Eigen/Core>

#include <stdexcept>
#include <string>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "adamx/abi.hpp"

// kOpenMP and for_each_block differ with ADAMX_OPENMP, and so does the
// namespace tag (abi.hpp) that keeps the two versions apart at link time.
// Both must see the same choice.
#if defined(ADAMX_OPENMP) != defined(ADAMX_ABI_OPENMP)
#error "ADAMX_OPENMP changed after the first adamx header was included; define it (or not) before, e.g. on the command line"
#endif

ADAMX_NAMESPACE_BEGIN
namespace detail {

#ifdef ADAMX_OPENMP
constexpr bool kOpenMP = true;
#else
constexpr bool kOpenMP = false;
#endif

/// Throws std::invalid_argument unless a step may use `threads` threads: at
/// least 1, and more than 1 only when adamx was compiled with OpenMP. The one
/// check of a thread count, for every optimizer and adapter; `who` starts the
/// message (e.g. "adamx::AdamX::set_threads: ").
inline void check_threads(const std::string& who, int threads) {
  if (threads < 1)
    throw std::invalid_argument(who + "invalid threads = " + std::to_string(threads) + " (must be >= 1)");
  if (threads > 1 && !kOpenMP)
    throw std::invalid_argument(who + "threads = " + std::to_string(threads) +
                                " needs OpenMP, but adamx was compiled without it (define "
                                "ADAMX_OPENMP and compile with -fopenmp)");
}

/// Below this many elements a group is stepped on one thread: starting a
/// parallel region costs more than the pass itself.
constexpr Eigen::Index kMinParallelElements = Eigen::Index{1} << 15;

/// Calls work(i) for i in [0, count), on up to `threads` threads.
template <class Work>
void for_each_block(Eigen::Index count, int threads, const Work& work) {
#ifdef ADAMX_OPENMP
  if (threads > 1 && count > 1) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (Eigen::Index i = 0; i < count; ++i) work(i);
    return;
  }
#else
  (void)threads;
#endif
  for (Eigen::Index i = 0; i < count; ++i) work(i);
}

/// While alive, Eigen's matrix products called on this thread use at most
/// `threads` threads (a rule that steps whole matrices: Muon). With OpenMP,
/// Eigen splits a large product over omp_get_max_threads() threads, which
/// is every core unless set otherwise; a step must use the optimizer's own
/// count (default 1) instead. The count is the calling thread's OpenMP
/// setting (nthreads-var, which other threads do not see), put back when
/// the guard goes. A count set with Eigen::setNbThreads overrides both.
class EigenProductThreads {
 public:
#ifdef _OPENMP
  explicit EigenProductThreads(int threads) : previous_(omp_get_max_threads()) { omp_set_num_threads(threads); }
  ~EigenProductThreads() { omp_set_num_threads(previous_); }
#else
  explicit EigenProductThreads(int /*threads*/) {}
#endif
  EigenProductThreads(const EigenProductThreads&) = delete;
  EigenProductThreads& operator=(const EigenProductThreads&) = delete;

#ifdef _OPENMP
 private:
  int previous_;
#endif
};

}  // namespace detail
ADAMX_NAMESPACE_END  // namespace adamx
