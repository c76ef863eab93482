// One optimizer step inside libtorch: adamx's adapters (adamx::torch_optim)
// against torch::optim::Adam / AdamW in the same binary, on the same tensors.
//
//   torch/<optimizer>/<shape>/threads:<n>
//     optimizer  libtorch_Adam, adamx_Adam, libtorch_AdamW, adamx_AdamW, adamx_AdamX
//     shape      single: one float tensor of 2^24 elements
//                model:  200 float tensors totalling 2^22 (a model-shaped list)
//                unfrozen: the model-shaped list after its first tensor skipped
//                  the first step (no gradient), so that tensor's step count
//                  stays one behind its group's: every adamx step steps a
//                  subset with two step counts, libtorch's is as usual
//     threads    1 or 2 (libtorch: at::set_num_threads; adamx: set_threads);
//                unfrozen: 1 only
//
// scripts/bench turns these into torch_adam_over_adamx_single and
// torch_adam_over_adamx_model (tools/bench_ratios.py). Wall-clock time.
#include <adamx/torch.hpp>

#include <benchmark/benchmark.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace {

constexpr std::int64_t kSingle = std::int64_t{1} << 24;
constexpr std::int64_t kModelTotal = std::int64_t{1} << 22;
constexpr std::int64_t kModelTensors = 200;

// Parameters with gradients, filled once: a step's cost does not depend on the values.
std::vector<torch::Tensor> make_params(bool model_shaped) {
  torch::manual_seed(1);
  std::vector<torch::Tensor> params;
  if (!model_shaped) {
    params.push_back(torch::randn({kSingle}));
  } else {
    const std::int64_t base = kModelTotal / kModelTensors;
    const std::int64_t extra = kModelTotal % kModelTensors;  // the first `extra` get one more
    for (std::int64_t i = 0; i < kModelTensors; ++i) params.push_back(torch::randn({base + (i < extra ? 1 : 0)}));
  }
  for (auto& p : params) {
    p.requires_grad_();
    p.mutable_grad() = torch::randn(p.sizes()) * 1e-2;
  }
  return params;
}

using Factory = std::function<std::unique_ptr<torch::optim::Optimizer>(std::vector<torch::Tensor>, int)>;

enum class Shape { single, model, unfrozen };

void bm_step(benchmark::State& state, const Factory& make, Shape shape, int threads) {
  if (threads > 1 && !adamx::detail::kOpenMP) {
    state.SkipWithError("built without OpenMP");
    return;
  }
  at::set_num_threads(threads);
  auto params = make_params(shape != Shape::single);
  auto optimizer = make(params, threads);
  const torch::Tensor first_grad = params[0].grad();
  if (shape == Shape::unfrozen) params[0].mutable_grad() = torch::Tensor();
  optimizer->step();  // the first step allocates the state in both
  params[0].mutable_grad() = first_grad;
  std::int64_t elements = 0;
  for (const auto& p : params) elements += p.numel();
  for (auto _ : state) {
    optimizer->step();
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * elements);
  state.counters["threads"] = threads;
}

template <class Libtorch, class LibtorchOptions>
Factory libtorch() {
  return [](std::vector<torch::Tensor> params, int) -> std::unique_ptr<torch::optim::Optimizer> {
    return std::make_unique<Libtorch>(std::move(params), LibtorchOptions(1e-3));
  };
}

template <class Adapter>
Factory adapter() {
  return [](std::vector<torch::Tensor> params, int threads) -> std::unique_ptr<torch::optim::Optimizer> {
    auto opt = std::make_unique<Adapter>(std::move(params), typename Adapter::Options(1e-3));
    opt->set_threads(threads);
    return opt;
  };
}

void register_benchmarks() {
  const std::vector<std::pair<std::string, Factory>> optimizers = {
      {"libtorch_Adam", libtorch<torch::optim::Adam, torch::optim::AdamOptions>()},
      {"adamx_Adam", adapter<adamx::torch_optim::Adam>()},
      {"libtorch_AdamW", libtorch<torch::optim::AdamW, torch::optim::AdamWOptions>()},
      {"adamx_AdamW", adapter<adamx::torch_optim::AdamW>()},
      {"adamx_AdamX", adapter<adamx::torch_optim::AdamX>()},
  };
  const std::vector<std::pair<const char*, Shape>> shapes = {
      {"single", Shape::single}, {"model", Shape::model}, {"unfrozen", Shape::unfrozen}};
  for (const auto& [name, make] : optimizers)
    for (const auto& [shape_name, shape] : shapes)
      for (const int threads : {1, 2}) {
        if (shape == Shape::unfrozen && threads > 1) continue;
        const std::string full = "torch/" + name + "/" + shape_name + "/threads:" + std::to_string(threads);
        benchmark::RegisterBenchmark(full.c_str(), bm_step, make, shape, threads)
            ->UseRealTime()
            ->Unit(benchmark::kMicrosecond);
      }
}

}  // namespace

int main(int argc, char** argv) {
  register_benchmarks();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("libtorch_version", TORCH_VERSION);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
