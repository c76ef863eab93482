// quickstart.cpp - fit a small linear model y = X w + b with AdamX.
#include <adamx/adamx.hpp>

#include <Eigen/Core>
#include <cstdio>
#include <cstring>

int main(int argc, char** argv) {
  // No options: --help says so, anything else is refused with exit status 2.
  if (argc > 1) {
    if (argc == 2 && (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0)) {
      std::printf("usage: quickstart\nFits y = X w + b with AdamX and prints the fit. Options: --help only.\n");
      return 0;
    }
    std::fprintf(stderr, "quickstart: unknown option '%s'\ntry 'quickstart --help'\n", argv[1]);
    return 2;
  }
  // 200 samples, 3 features; targets from known weights 1.5, -2, 0.5 and bias 0.3.
  const Eigen::MatrixXd X = Eigen::MatrixXd::Random(200, 3);
  const Eigen::VectorXd y = (X * Eigen::Vector3d(1.5, -2.0, 0.5)).array() + 0.3;
  const double n = static_cast<double>(X.rows());

  Eigen::VectorXd w = Eigen::VectorXd::Zero(3), b = Eigen::VectorXd::Zero(1);  // parameters
  Eigen::VectorXd gw(3), gb(1);                                                // their gradients

  // One parameter group holding both tensors; options default like PyTorch's.
  adamx::AdamX<double> opt;
  adamx::AdamX<double>::Options o;
  o.lr = 0.05;
  opt.add_group({w, b}, o, "linear", {"weight", "bias"});

  for (int step = 1; step <= 400; ++step) {
    // Mean squared error and its gradient.
    const Eigen::VectorXd r = (X * w).array() + b(0) - y.array();
    gw = (2.0 / n) * X.transpose() * r;
    gb(0) = (2.0 / n) * r.sum();

    // One list of params and one of grads per group, in group order. The
    // report's gamma scales g^2 in AdamX's second moment and follows the
    // gradient norm against its running average: here the gradient keeps
    // shrinking, so gamma falls below 1 (Adam is AdamX with gamma fixed at 1).
    const auto& reports = opt.step({{w, b}}, {{gw, gb}});
    if (step % 50 == 0) {
      std::printf("step %3d  loss %.3e  gamma %.3f\n", step, r.squaredNorm() / n, reports[0].gamma);
    }
  }
  std::printf("w = [%.3f %.3f %.3f], b = %.3f (true: [1.5 -2 0.5], 0.3)\n", w(0), w(1), w(2), b(0));
}
