// bench_step.cpp - how fast one optimizer step is, and how close it comes to
// the memory bandwidth it needs.
//
// A step of Adam, AdamW or AdamX over N elements reads θ, g, m and v and
// writes θ, m and v: 7 words per element, 28 bytes in float and 56 in double.
// Every benchmark here reports that traffic as bytes_per_second and N as
// items_per_second, including the ones that move more (the naive baseline,
// the skip/error policies' checking pass), so their bytes_per_second is the
// effective bandwidth of the same useful work.
//
// Families (names are <family>/<variant>/<N>; scripts/bench and
// tools/bench_ratios.py rely on them):
//   step/<Adam|AdamW|AdamX>/<float|double>/N   one tensor, N = 4^6 ... 4^12 (2^12 ... 2^24)
//   roofline/float/N           4-read-3-write copy over four arrays, software prefetch: the bound,
//                              compiled for the instruction set adamx chose
//   naive_eigen_adam/float/N   Adam as three whole-array Eigen expressions
//   multitensor/AdamX/float/tensors:<k>/N       one group of k tensors, N elements in all
//   multitensor/AdamX/float/tensors:1:again/N   tensors:1 run once more (A/A: the run's noise)
//   threads/AdamX/float/threads:<t>/N/real_time AdamX with set_threads(t)
//   nonfinite/AdamX/float/<policy>/N            NonFinitePolicy propagate, skip, error
//   step/AdamX/bfloat16/N                       bfloat16 parameters and gradients, float state
//   step/AdamX/half/N                           half parameters and gradients, float state
//   again/Adam/float/N         step/Adam/float/N once more (A/A: what noise alone moves a ratio)
//   isa/<set>/<Adam|AdamX>/<float|half|bfloat16>/N  one instruction set forced
//                              (set_instruction_set), for every set this CPU supports
//
// Parameters and gradients are random, generated once per size and reused;
// each benchmark steps one optimizer instance repeatedly with the same
// gradients, after one untimed warm-up step that also touches m and v.
#include <adamx/adamx.hpp>

#include <Eigen/Core>
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#ifndef ADAMX_BENCH_BUILD_TYPE
#define ADAMX_BENCH_BUILD_TYPE "unknown"
#endif
#ifndef ADAMX_BENCH_CXX_FLAGS
#define ADAMX_BENCH_CXX_FLAGS "unknown"
#endif

namespace {

constexpr std::int64_t kWordsPerElement = 7;  // read θ, g, m, v; write θ, m, v
constexpr std::int64_t kSmallest = std::int64_t{1} << 12;
constexpr std::int64_t kLargest = std::int64_t{1} << 24;

// ---- data -----------------------------------------------------------------

enum class Fill { param, grad };

// n random values, generated on first use and kept for the whole run (the
// largest double arrays take a noticeable fraction of a second to generate,
// and Google Benchmark calls each benchmark function several times).
//   param: N(0, 0.05²), like an initialised weight.
//   grad:  N(0, 1) times a per-element scale 10^U(-4, -2), so magnitudes span
//          a few decades, as gradients of different units do.
template <class Scalar>
const std::vector<Scalar>& random_values(std::int64_t n, Fill fill) {
  static std::map<std::pair<std::int64_t, Fill>, std::vector<Scalar>> cache;
  const auto key = std::make_pair(n, fill);
  const auto found = cache.find(key);
  if (found != cache.end()) return found->second;

  std::mt19937_64 rng(static_cast<std::uint64_t>(n) * 2 + (fill == Fill::grad ? 1 : 0));
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> exponent(-4.0, -2.0);
  std::vector<Scalar> values(static_cast<std::size_t>(n));
  for (Scalar& x : values) {
    const double z = normal(rng);
    x = static_cast<Scalar>(fill == Fill::param ? 0.05 * z : z * std::pow(10.0, exponent(rng)));
  }
  return cache.emplace(key, std::move(values)).first->second;
}

template <class Scalar>
using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

template <class Scalar>
Vector<Scalar> copy_of(const std::vector<Scalar>& values, std::int64_t offset, std::int64_t n) {
  return Eigen::Map<const Vector<Scalar>>(values.data() + offset, n);
}

template <class Scalar>
void set_counters(benchmark::State& state, std::int64_t n) {
  state.SetItemsProcessed(state.iterations() * n);
  state.SetBytesProcessed(state.iterations() * n * kWordsPerElement *
                          static_cast<std::int64_t>(sizeof(Scalar)));
}

// The same traffic model when parameters and state differ in size (bfloat16 or half
// parameters and gradients, float m and v): θ and g read, θ written, in the
// parameter type; m and v read and written in the state type.
template <class Param, class State>
void set_counters(benchmark::State& state, std::int64_t n) {
  state.SetItemsProcessed(state.iterations() * n);
  state.SetBytesProcessed(state.iterations() * n *
                          static_cast<std::int64_t>(3 * sizeof(Param) + 4 * sizeof(State)));
}

// ---- the optimizer under test ---------------------------------------------

// One parameter group of `tensors` equal tensors, `total` elements in all,
// each parameter and gradient its own allocation, and the step() containers
// built once, as a training loop would.
template <class Opt>
class Problem {
 public:
  using Scalar = typename Opt::scalar_type;

  Problem(std::int64_t total, std::int64_t tensors, const typename Opt::Options& options) {
    if (tensors < 1 || total % tensors != 0)
      throw std::invalid_argument("bench: the tensors must split the elements evenly");
    const std::vector<Scalar>& p0 = random_values<Scalar>(total, Fill::param);
    const std::vector<Scalar>& g0 = random_values<Scalar>(total, Fill::grad);
    const std::int64_t each = total / tensors;
    params_.reserve(static_cast<std::size_t>(tensors));
    grads_.reserve(static_cast<std::size_t>(tensors));
    for (std::int64_t k = 0; k < tensors; ++k) {
      params_.push_back(copy_of(p0, k * each, each));
      grads_.push_back(copy_of(g0, k * each, each));
    }
    param_views_.resize(1);
    grad_views_.resize(1);
    for (std::size_t k = 0; k < params_.size(); ++k) {
      param_views_[0].emplace_back(params_[k]);
      grad_views_[0].emplace_back(grads_[k]);
    }
    opt_.add_group(param_views_[0], options);
  }

  const std::vector<adamx::StepReport>& step() { return opt_.step(param_views_, grad_views_); }
  Opt& optimizer() { return opt_; }

 private:
  std::vector<Vector<Scalar>> params_;
  std::vector<Vector<Scalar>> grads_;
  std::vector<std::vector<adamx::TensorRef<Scalar>>> param_views_;
  std::vector<std::vector<adamx::ConstTensorRef<Scalar>>> grad_views_;
  Opt opt_;
};

// The timed loop shared by every optimizer benchmark.
template <class Opt>
void run_steps(benchmark::State& state, Problem<Opt>& problem, std::int64_t n) {
  problem.step();  // warm-up: first touch of m and v, outside the timing
  for (auto _ : state) {
    const std::vector<adamx::StepReport>& reports = problem.step();
    benchmark::DoNotOptimize(reports.front().grad_norm_sq);
    benchmark::ClobberMemory();
  }
  set_counters<typename Opt::scalar_type, typename Opt::state_scalar_type>(state, n);
}

template <class Opt>
void bm_step(benchmark::State& state, std::int64_t tensors,
             adamx::NonFinitePolicy policy = adamx::NonFinitePolicy::propagate) {
  const std::int64_t n = state.range(0);
  typename Opt::Options options;
  options.nonfinite = policy;
  Problem<Opt> problem(n, tensors, options);
  run_steps(state, problem, n);
}

// The same step with the element passes on one instruction set, whichever
// the run selected otherwise (restored afterwards): what dispatch buys over
// the baseline the compiler flags give.
template <class Opt>
void bm_step_on(benchmark::State& state, adamx::InstructionSet set) {
  const adamx::InstructionSet selected = adamx::instruction_set();
  adamx::set_instruction_set(set);
  bm_step<Opt>(state, 1);
  adamx::set_instruction_set(selected);
}

// ---- matrices: Muon against AdamW on the same layers ----------------------

// A model's weight matrices and bias vectors, float, as a training loop holds
// them: every matrix in one group and every vector in another. An optimizer
// whose rule steps whole matrices (Muon) gets its default options for the
// matrices and muon_adamw_options() for the vectors; any other its defaults
// for both, so the two step the same tensors.
struct LayerShape {
  Eigen::Index rows, cols;
};

template <class Opt>
class Layers {
 public:
  using Shape = LayerShape;
  explicit Layers(const std::vector<Shape>& shapes) {
    std::int64_t seed = 0;
    for (const Shape& shape : shapes) {
      const std::int64_t n = shape.rows * shape.cols;
      const std::vector<float>& p0 = random_values<float>(n + seed, Fill::param);
      const std::vector<float>& g0 = random_values<float>(n + seed, Fill::grad);
      Eigen::MatrixXf p = Eigen::Map<const Eigen::MatrixXf>(p0.data(), shape.rows, shape.cols);
      Eigen::MatrixXf g = Eigen::Map<const Eigen::MatrixXf>(g0.data(), shape.rows, shape.cols);
      const std::size_t kind = shape.rows > 1 && shape.cols > 1 ? 0 : 1;
      params_[kind].push_back(std::move(p));
      grads_[kind].push_back(std::move(g));
      elements_ += n;
      ++seed;
    }
    typename Opt::Options vector_options{};
    if constexpr (adamx::detail::steps_matrices<typename Opt::flavour_type::Rule>::value) vector_options = adamx::muon_adamw_options();
    for (std::size_t kind = 0; kind < 2; ++kind) {
      if (params_[kind].empty()) continue;
      param_views_.emplace_back(params_[kind].begin(), params_[kind].end());
      grad_views_.emplace_back(grads_[kind].begin(), grads_[kind].end());
      opt_.add_group(param_views_.back(), kind == 0 ? typename Opt::Options{} : vector_options);
    }
  }
  const std::vector<adamx::StepReport>& step() { return opt_.step(param_views_, grad_views_); }
  std::int64_t elements() const { return elements_; }

 private:
  std::vector<Eigen::MatrixXf> params_[2], grads_[2];
  std::vector<std::vector<adamx::TensorRef<float>>> param_views_;
  std::vector<std::vector<adamx::ConstTensorRef<float>>> grad_views_;
  std::int64_t elements_ = 0;
  Opt opt_;
};

template <class Opt>
void bm_layers(benchmark::State& state, std::vector<LayerShape> shapes) {
  Layers<Opt> layers(shapes);
  layers.step();  // warm-up: first touch of the state, outside the timing
  for (auto _ : state) {
    const std::vector<adamx::StepReport>& reports = layers.step();
    benchmark::DoNotOptimize(reports.front().grad_norm_sq);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * layers.elements());
}

// Optimizer::set_threads arrives with the OpenMP kernel; until a header has
// it, the one-thread runs go ahead and the two-thread runs are skipped.
template <class Opt, class = void>
struct has_set_threads : std::false_type {};
template <class Opt>
struct has_set_threads<Opt, std::void_t<decltype(std::declval<Opt&>().set_threads(1))>>
    : std::true_type {};

template <class Opt>
bool use_threads(benchmark::State& state, Opt& opt, int threads) {
  if constexpr (has_set_threads<Opt>::value) {
    try {
      opt.set_threads(threads);
    } catch (const std::invalid_argument& e) {
      state.SkipWithError(e.what());
      return false;
    }
    return true;
  } else {
    static_cast<void>(opt);
    if (threads == 1) return true;
    state.SkipWithError("adamx::Optimizer has no set_threads in this build");
    return false;
  }
}

template <class Opt>
void bm_threads(benchmark::State& state, int threads) {
  const std::int64_t n = state.range(0);
  Problem<Opt> problem(n, 1, typename Opt::Options{});
  if (!use_threads(state, problem.optimizer(), threads)) return;
  run_steps(state, problem, n);
  state.counters["threads"] = threads;
}

// ---- references -----------------------------------------------------------

// The bound: per element, read four floats and write three of them back, with
// arithmetic too light to matter, so the loop runs at memory speed. The same
// shape of traffic as a step (θ, m, v read and written, g only read).
//
// Each cache line (16 floats) asks for the line kPrefetchAhead elements on in
// all four arrays. On the 2-core development VM this made the loop about 20%
// faster at 2^24 than the same loop left to the hardware prefetcher, and the
// library's kernel prefetches too: without it the "bound" would be beaten.
constexpr std::int64_t kLine = 16;
constexpr std::int64_t kPrefetchAhead = 512;

// Write: 1 for a line that will be written, 0 for one that is only read.
template <int Write>
inline void prefetch(const float* p) {
#if defined(__GNUC__)
  // Integer arithmetic: the address may lie past the end of the array (a
  // prefetch never faults), where pointer arithmetic would be undefined.
  __builtin_prefetch(reinterpret_cast<const void*>(reinterpret_cast<std::uintptr_t>(p) +
                                                   kPrefetchAhead * sizeof(float)),
                     Write);
#else
  static_cast<void>(p);
#endif
}

// The loop for one instruction set: inlined into a function compiled for
// it, where the compiler vectorises it with that set's registers.
#if defined(__GNUC__)
#define BENCH_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define BENCH_ALWAYS_INLINE inline
#endif

BENCH_ALWAYS_INLINE void roofline_elements(float* a, float* b, float* c, const float* d, std::int64_t n) {
#pragma omp simd
  for (std::int64_t i = 0; i < n; ++i) {
    const float x = d[i];
    a[i] = 0.5f * (a[i] + x);
    b[i] = 0.5f * (b[i] + x);
    c[i] = 0.5f * (c[i] + x);
  }
}

BENCH_ALWAYS_INLINE void roofline_lines(float* a, float* b, float* c, const float* d, std::int64_t n) {
  std::int64_t i = 0;
  for (; i + kLine <= n; i += kLine) {
    prefetch<1>(a + i);
    prefetch<1>(b + i);
    prefetch<1>(c + i);
    prefetch<0>(d + i);
    roofline_elements(a + i, b + i, c + i, d + i, kLine);
  }
  roofline_elements(a + i, b + i, c + i, d + i, n - i);
}

void roofline_baseline(float* a, float* b, float* c, const float* d, std::int64_t n) {
  roofline_lines(a, b, c, d, n);
}

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define BENCH_ROOFLINE_PER_SET 1
__attribute__((target("avx2"))) void roofline_avx2(float* a, float* b, float* c, const float* d, std::int64_t n) {
  roofline_lines(a, b, c, d, n);
}
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl"))) void roofline_avx512(float* a, float* b, float* c,
                                                                                    const float* d, std::int64_t n) {
  roofline_lines(a, b, c, d, n);
}
#endif

// The roofline with the instruction set adamx steps with (its choice, or
// set_instruction_set's): a bound compiled for SSE2 alone would be beaten by
// the AVX passes out of cache, and flatter them in it.
void roofline_pass(float* a, float* b, float* c, const float* d, std::int64_t n) {
#if defined(BENCH_ROOFLINE_PER_SET)
  switch (adamx::instruction_set()) {
    case adamx::InstructionSet::avx512: return roofline_avx512(a, b, c, d, n);
    case adamx::InstructionSet::avx2: return roofline_avx2(a, b, c, d, n);
    default: break;
  }
#endif
  roofline_baseline(a, b, c, d, n);
}

void bm_roofline(benchmark::State& state) {
  const std::int64_t n = state.range(0);
  const std::vector<float>& p0 = random_values<float>(n, Fill::param);
  const std::vector<float>& g0 = random_values<float>(n, Fill::grad);
  Vector<float> a = copy_of(p0, 0, n), b = copy_of(g0, 0, n), c = copy_of(p0, 0, n),
                d = copy_of(g0, 0, n);
  roofline_pass(a.data(), b.data(), c.data(), d.data(), n);  // warm-up
  for (auto _ : state) {
    roofline_pass(a.data(), b.data(), c.data(), d.data(), n);
    benchmark::DoNotOptimize(a.data());
    benchmark::ClobberMemory();
  }
  set_counters<float>(state, n);
}

// Adam written the obvious way: one whole-array Eigen expression each for m,
// v and θ. It moves 10 words per element (m: 3, v: 3, θ: 4) instead of 7.
void bm_naive_eigen_adam(benchmark::State& state) {
  const std::int64_t n = state.range(0);
  const float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  const double lr = 1e-3;
  Eigen::ArrayXf p = copy_of(random_values<float>(n, Fill::param), 0, n).array();
  const Eigen::ArrayXf g = copy_of(random_values<float>(n, Fill::grad), 0, n).array();
  Eigen::ArrayXf m = Eigen::ArrayXf::Zero(n), v = Eigen::ArrayXf::Zero(n);
  std::int64_t t = 0;
  const auto step = [&] {
    ++t;
    const double td = static_cast<double>(t);
    const auto step_size = static_cast<float>(lr / (1.0 - std::pow(0.9, td)));
    const auto sqrt_bc2 = static_cast<float>(std::sqrt(1.0 - std::pow(0.999, td)));
    m = beta1 * m + (1.0f - beta1) * g;
    v = beta2 * v + (1.0f - beta2) * g.square();
    p -= step_size * m / (v.sqrt() / sqrt_bc2 + eps);
  };
  step();  // warm-up
  for (auto _ : state) {
    step();
    benchmark::DoNotOptimize(p.data());
    benchmark::ClobberMemory();
  }
  set_counters<float>(state, n);
}

// ---- registration ---------------------------------------------------------

void sizes(benchmark::internal::Benchmark* b) {
  b->RangeMultiplier(4)->Range(kSmallest, kLargest)->Unit(benchmark::kMicrosecond);
}

template <class Opt>
void register_step(const std::string& name) {
  sizes(benchmark::RegisterBenchmark(name.c_str(), bm_step<Opt>, std::int64_t{1},
                                     adamx::NonFinitePolicy::propagate));
}

void register_benchmarks() {
  // Every optimizer of the library in float (rules.hpp's list, so an
  // optimizer added there is measured here): RAdam's rectified step is
  // Adam's rule, AdaBound adds a clip, AdaMod a third array (read and
  // written: 36 bytes per float element), Lion has one array fewer.
  // An optimizer that steps whole matrices is measured on matrices below
  // (layers/), not on this one long vector.
#define ADAMX_REGISTER_STEP(Name)                                                               \
  if constexpr (!adamx::detail::steps_matrices<adamx::flavour::Name::Rule>::value) \
    register_step<adamx::Name<float>>("step/" #Name "/float");
  ADAMX_FOR_EACH_OPTIMIZER(ADAMX_REGISTER_STEP)
#undef ADAMX_REGISTER_STEP
  register_step<adamx::Adam<double>>("step/Adam/double");
  register_step<adamx::AdamW<double>>("step/AdamW/double");
  register_step<adamx::AdamX<double>>("step/AdamX/double");

  sizes(benchmark::RegisterBenchmark("roofline/float", bm_roofline));
  sizes(benchmark::RegisterBenchmark("naive_eigen_adam/float", bm_naive_eigen_adam));

  // A/A control: Adam's step rows once more under another name. Random
  // interleaving puts the two copies at different times of the run, so
  // their ratio (ideally 1) is the smallest difference this run resolves.
  for (const std::int64_t n : {std::int64_t{1} << 18, std::int64_t{1} << 20, std::int64_t{1} << 24})
    benchmark::RegisterBenchmark("again/Adam/float", bm_step<adamx::Adam<float>>, std::int64_t{1},
                                 adamx::NonFinitePolicy::propagate)
        ->Arg(n)
        ->Unit(benchmark::kMicrosecond);

  // Each instruction set this CPU supports, forced: in cache (2^18, 2^20),
  // where the arithmetic sets the pace, and out of cache (2^24).
  for (const adamx::InstructionSet set : adamx::supported_instruction_sets()) {
    const std::string prefix = std::string("isa/") + adamx::instruction_set_name(set);
    benchmark::RegisterBenchmark((prefix + "/Adam/float").c_str(), bm_step_on<adamx::Adam<float>>, set)
        ->Arg(std::int64_t{1} << 18)
        ->Arg(std::int64_t{1} << 20)
        ->Arg(std::int64_t{1} << 24)
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark((prefix + "/AdamX/half").c_str(), bm_step_on<adamx::AdamX<Eigen::half>>, set)
        ->Arg(std::int64_t{1} << 20)
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark((prefix + "/AdamX/bfloat16").c_str(), bm_step_on<adamx::AdamX<Eigen::bfloat16>>,
                                 set)
        ->Arg(std::int64_t{1} << 20)
        ->Unit(benchmark::kMicrosecond);
  }

  // 1024 tensors against one tensor of the same total, one group each: 2^20
  // elements (in the last-level cache: each tensor start's latency is
  // exposed) and 2^24 (out of cache, streaming).
  for (const std::int64_t tensors : {std::int64_t{1024}, std::int64_t{1}}) {
    const std::string name = "multitensor/AdamX/float/tensors:" + std::to_string(tensors);
    benchmark::RegisterBenchmark(name.c_str(), bm_step<adamx::AdamX<float>>, tensors,
                                 adamx::NonFinitePolicy::propagate)
        ->Arg(std::int64_t{1} << 20)
        ->Arg(std::int64_t{1} << 24)
        ->Unit(benchmark::kMicrosecond);
  }
  // The one-tensor case again, later in the same run: its ratio to the first
  // (A/A, ideally 1) shows how far noise moves the multitensor ratios.
  benchmark::RegisterBenchmark("multitensor/AdamX/float/tensors:1:again", bm_step<adamx::AdamX<float>>,
                               std::int64_t{1}, adamx::NonFinitePolicy::propagate)
      ->Arg(std::int64_t{1} << 20)
      ->Arg(std::int64_t{1} << 24)
      ->Unit(benchmark::kMicrosecond);

  for (const int threads : {1, 2}) {
    const std::string name = "threads/AdamX/float/threads:" + std::to_string(threads);
    benchmark::RegisterBenchmark(name.c_str(), bm_threads<adamx::AdamX<float>>, threads)
        ->Arg(std::int64_t{1} << 22)
        ->Arg(std::int64_t{1} << 24)
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
  }

  // bfloat16 and half parameters and gradients with float state, against float.
  benchmark::RegisterBenchmark("step/AdamX/bfloat16", bm_step<adamx::AdamX<Eigen::bfloat16>>,
                               std::int64_t{1}, adamx::NonFinitePolicy::propagate)
      ->Arg(std::int64_t{1} << 20)
      ->Arg(std::int64_t{1} << 24)
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("step/AdamX/half", bm_step<adamx::AdamX<Eigen::half>>,
                               std::int64_t{1}, adamx::NonFinitePolicy::propagate)
      ->Arg(std::int64_t{1} << 20)
      ->Arg(std::int64_t{1} << 24)
      ->Unit(benchmark::kMicrosecond);

  // Muon's step (momentum, five Newton-Schulz steps of matrix products, the
  // update) against AdamW's element pass on the same tensors: the demo's MLP
  // (784 -> 128 -> 10, weights and biases) and one 1024x1024 layer. AdamW is
  // measured twice (A/A: the run's noise).
  const std::vector<std::pair<std::string, std::vector<LayerShape>>> models = {
      {"mlp", {{128, 784}, {128, 1}, {10, 128}, {10, 1}}}, {"1024x1024", {{1024, 1024}}}};
  for (const auto& model : models) {
    benchmark::RegisterBenchmark(("layers/AdamW/float/" + model.first).c_str(), bm_layers<adamx::AdamW<float>>,
                                 model.second)
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(("layers/Muon/float/" + model.first).c_str(), bm_layers<adamx::Muon<float>>,
                                 model.second)
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(("layers/AdamW/float/" + model.first + ":again").c_str(),
                                 bm_layers<adamx::AdamW<float>>, model.second)
        ->Unit(benchmark::kMicrosecond);
  }

  // Finite gradients: the cost of the checking pass when nothing is wrong.
  for (const adamx::NonFinitePolicy policy :
       {adamx::NonFinitePolicy::propagate, adamx::NonFinitePolicy::skip,
        adamx::NonFinitePolicy::error}) {
    const std::string name = std::string("nonfinite/AdamX/float/") + adamx::to_string(policy);
    benchmark::RegisterBenchmark(name.c_str(), bm_step<adamx::AdamX<float>>, std::int64_t{1},
                                 policy)
        ->Arg(std::int64_t{1} << 20)
        ->Arg(std::int64_t{1} << 24)
        ->Unit(benchmark::kMicrosecond);
  }
}

// The CPU's model name as the kernel reports it ("unknown" elsewhere).
std::string cpu_model() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) != 0) continue;
    const std::size_t colon = line.find(':');
    if (colon != std::string::npos && colon + 2 <= line.size()) return line.substr(colon + 2);
  }
  return "unknown";
}

// The bandwidth the roofline loop reaches over 2^24 floats per array (256
// MiB in all, far out of any cache), best of five passes after a warm-up: a
// number for the header, measured before the benchmarks start so a reader
// sees the machine's state at the time. In GB/s of the step's 7-word traffic.
double measured_bandwidth_gbytes_per_s() {
  const std::int64_t n = kLargest;
  std::vector<float> a(static_cast<std::size_t>(n), 1.0f), b(a), c(a), d(a);
  roofline_pass(a.data(), b.data(), c.data(), d.data(), n);
  double best = 0.0;
  for (int pass = 0; pass < 5; ++pass) {
    const auto start = std::chrono::steady_clock::now();
    roofline_pass(a.data(), b.data(), c.data(), d.data(), n);
    benchmark::DoNotOptimize(a.data());
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::max(best, static_cast<double>(n * kWordsPerElement * 4) / seconds / 1e9);
  }
  return best;
}

std::string supported_sets() {
  std::string names;
  for (const adamx::InstructionSet set : adamx::supported_instruction_sets())
    names += (names.empty() ? "" : " ") + std::string(adamx::instruction_set_name(set));
  return names;
}

}  // namespace

int main(int argc, char** argv) {
  register_benchmarks();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  // The machine, in the header of the console output and in the JSON.
  benchmark::AddCustomContext("cpu_model", cpu_model());
  benchmark::AddCustomContext("instruction_set", adamx::instruction_set_name(adamx::instruction_set()));
  benchmark::AddCustomContext("instruction_sets_supported", supported_sets());
  benchmark::AddCustomContext("baseline", adamx::baseline_description());
  char bandwidth[32];
  std::snprintf(bandwidth, sizeof bandwidth, "%.1f", measured_bandwidth_gbytes_per_s());
  benchmark::AddCustomContext("bandwidth_gbytes_per_s", bandwidth);
  benchmark::AddCustomContext("adamx_version", std::to_string(ADAMX_VERSION_MAJOR) + "." +
                                                  std::to_string(ADAMX_VERSION_MINOR) + "." +
                                                  std::to_string(ADAMX_VERSION_PATCH));
  benchmark::AddCustomContext("compiler", __VERSION__);
  benchmark::AddCustomContext("build_type", ADAMX_BENCH_BUILD_TYPE);
  benchmark::AddCustomContext("cxx_flags", ADAMX_BENCH_CXX_FLAGS);
#ifdef ADAMX_OPENMP
  benchmark::AddCustomContext("adamx_openmp", "on");
#else
  benchmark::AddCustomContext("adamx_openmp", "off");
#endif
  benchmark::AddCustomContext(
      "set_threads", has_set_threads<adamx::AdamX<float>>::value ? "available" : "missing");
  benchmark::AddCustomContext("traffic_model",
                              "7 words per element (read theta, g, m, v; write theta, m, v)");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
