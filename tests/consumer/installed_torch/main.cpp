// adamx::torch_optim::AdamX from an installed adamx, inside libtorch: one step
// on w = (1, 1, 1) with loss sum(w^2). The first Adam-family step moves each
// element by lr·g/(|g| + ε') ≈ lr against the gradient's sign, so
// w ≈ 1 - 0.1 = 0.9; a wrong build or a broken link fails here.
#include <adamx/torch.hpp>

#include <cmath>
#include <cstdio>

int main() {
  torch::Tensor w = torch::ones({3}, torch::requires_grad());
  adamx::torch_optim::AdamX optimizer({w}, adamx::torch_optim::AdamXOptions(0.1));
  optimizer.zero_grad();
  (w * w).sum().backward();
  optimizer.step();
  const float first = w[0].item<float>();
  std::printf("adamx::torch consumer: w[0] = %.6f after one step (expected about 0.9)\n", first);
  return std::abs(first - 0.9f) < 1e-4f ? 0 : 1;
}
