// bench_mpi.cpp - what sharding costs on one machine: the wall time of one
// data-parallel step, Adam and AdamX, N = 2^22 float parameters in one group.
//
// Run under mpirun with 1, 2, 3 ranks (docs/distributed.md has the table):
//   single/<Adam|AdamX>      one process, adamx::Optimizer, no MPI call
//                            (reported by the 1-rank run only)
//   zero1/<Adam|AdamX>       adamx::mpi::ShardedOptimizer::step: reduce-scatter
//                            of the gradient, the shard's step, all-gather of θ
//   zero1_global/<Adam|AdamX> step_global: the same without the reduce-scatter
//   zero1_256groups/AdamX/bucket_cap/<cap>  the same N as 256 groups, with the
//                            collectives capped at 1 element (one per group),
//                            2^18 (the default) and 2^31 - 1 (one per step)
// Every benchmark runs a fixed number of iterations, the same on every rank
// (Google Benchmark would otherwise pick counts per rank from its own timing,
// and ranks waiting in different collectives never return). Rank 0 reports,
// in real time, since a rank waiting on another is not using CPU.
#include <adamx/adamx.hpp>
#include <adamx/mpi.hpp>

#include <benchmark/benchmark.h>
#include <mpi.h>

#include <climits>
#include <cstdint>
#include <vector>

namespace {

constexpr Eigen::Index kElements = Eigen::Index{1} << 22;
constexpr std::int64_t kIterations = 60;

struct Model {
  Eigen::VectorXf theta = Eigen::VectorXf::Random(kElements) * 0.05f;
  Eigen::VectorXf grad = Eigen::VectorXf::Random(kElements) * 1e-3f;
  std::vector<std::vector<adamx::TensorRef<float>>> params{{theta}};
  std::vector<std::vector<adamx::ConstTensorRef<float>>> grads{{grad}};
};

void report(benchmark::State& state) {
  state.SetItemsProcessed(state.iterations() * kElements);
}

template <class Opt>
void single(benchmark::State& state) {
  Model model;
  Opt opt;
  opt.add_group(model.params[0]);
  opt.step(model.params, model.grads);
  for (auto _ : state) opt.step(model.params, model.grads);
  report(state);
}

template <class Sharded, bool kReduceScatter>
void zero1(benchmark::State& state) {
  Model model;
  Sharded opt(MPI_COMM_WORLD);
  opt.add_group(model.params[0]);
  opt.step_global(model.params, model.grads);  // checks the layouts once
  for (auto _ : state) {
    if (kReduceScatter)
      opt.step(model.params, model.grads);
    else
      opt.step_global(model.params, model.grads);
  }
  report(state);
}

// The same 2^22 parameters as 256 groups of 2^14 (a deep model's per-layer
// groups), stepped with collectives capped at state.range(0) elements:
// 1 gives every group its own reduce-scatter and all-gather, 2^18 is the
// default (16 groups share a pair), 2^31 - 1
// one pair for the whole model. docs/distributed.md has the figures.
void zero1_many_groups(benchmark::State& state) {
  constexpr int kGroups = 256;
  constexpr Eigen::Index kPerGroup = kElements / kGroups;
  Model model;
  adamx::mpi::AdamX<float> opt(MPI_COMM_WORLD);
  std::vector<std::vector<adamx::TensorRef<float>>> params;
  std::vector<std::vector<adamx::ConstTensorRef<float>>> grads;
  for (int g = 0; g < kGroups; ++g) {
    params.push_back({adamx::TensorRef<float>(model.theta.data() + g * kPerGroup, kPerGroup, 1)});
    grads.push_back({adamx::ConstTensorRef<float>(model.grad.data() + g * kPerGroup, kPerGroup, 1)});
    opt.add_group(params.back());
  }
  opt.set_max_bucket_elements(state.range(0));
  opt.step(params, grads);  // checks the layouts once
  for (auto _ : state) opt.step(params, grads);
  report(state);
}

// Rank 0 prints; the others run the same benchmarks silently.
class Silent : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(const Context&) override { return true; }
  void ReportRuns(const std::vector<Run>&) override {}
};

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  if (ranks == 1) {
    benchmark::RegisterBenchmark("single/Adam", single<adamx::Adam<float>>)->Iterations(kIterations)->UseRealTime();
    benchmark::RegisterBenchmark("single/AdamX", single<adamx::AdamX<float>>)->Iterations(kIterations)->UseRealTime();
  }
  benchmark::RegisterBenchmark("zero1/Adam", zero1<adamx::mpi::Adam<float>, true>)
      ->Iterations(kIterations)->UseRealTime();
  benchmark::RegisterBenchmark("zero1/AdamX", zero1<adamx::mpi::AdamX<float>, true>)
      ->Iterations(kIterations)->UseRealTime();
  benchmark::RegisterBenchmark("zero1_global/Adam", zero1<adamx::mpi::Adam<float>, false>)
      ->Iterations(kIterations)->UseRealTime();
  benchmark::RegisterBenchmark("zero1_global/AdamX", zero1<adamx::mpi::AdamX<float>, false>)
      ->Iterations(kIterations)->UseRealTime();
  benchmark::RegisterBenchmark("zero1_256groups/AdamX/bucket_cap", zero1_many_groups)
      ->Arg(1)
      ->Arg(1 << 18)
      ->Arg(INT_MAX)
      ->Iterations(kIterations)
      ->UseRealTime();
  benchmark::Initialize(&argc, argv);
  Silent silent;
  if (rank == 0)
    benchmark::RunSpecifiedBenchmarks();
  else
    benchmark::RunSpecifiedBenchmarks(&silent);
  benchmark::Shutdown();
  MPI_Finalize();
  return 0;
}
