// cartpole.hpp - the cart-pole balancing problem: a pole hinged on a cart
// that moves along a track, kept upright by pushing the cart left or right
// with a force of fixed magnitude.
//
// Dynamics: A. G. Barto, R. S. Sutton and C. W. Anderson, "Neuronlike
// adaptive elements that can solve difficult learning control problems",
// IEEE Transactions on Systems, Man, and Cybernetics SMC-13(5):834-846, 1983
// (their appendix), without friction (μc = μp = 0), integrated, as there, by
// Euler's method with a step of τ = 0.02 s. The paper lists g = -9.8 m/s²,
// a sign slip (R. V. Florian, "Correct equations for the dynamics of the
// cart-pole system", Center for Cognitive and Neural Studies, 2007): written
// with g = +9.8 below, the pole falls when it leans, as it must.
//
// Episode rules: those of the modern benchmark (OpenAI Gym's CartPole-v1):
// every state variable starts uniform in [-0.05, 0.05); each step earns a
// reward of 1, the failing one included; the episode ends when the cart
// leaves the track (|x| > 2.4 m) or the pole leans more than 12 degrees,
// and is cut off after 500 steps, so a return is the number of steps, at
// most 500.
#pragma once

#include <array>
#include <cmath>
#include <random>

namespace study {
namespace cartpole {

constexpr double kGravity = 9.8;       // m/s², downwards
constexpr double kCartMass = 1.0;      // kg
constexpr double kPoleMass = 0.1;      // kg
constexpr double kHalfLength = 0.5;    // m, pivot to the pole's centre of mass
constexpr double kForce = 10.0;        // N, the magnitude of every push
constexpr double kTau = 0.02;          // s, one Euler step
constexpr double kTrackLimit = 2.4;    // m
constexpr double kAngleLimit = 12.0 * 3.14159265358979323846 / 180.0;  // rad
constexpr double kStartRange = 0.05;   // start state uniform in ±this
constexpr int kMaxSteps = 500;         // CartPole-v1's cut-off

/// A uniform number in [0, 1) from one 32-bit draw: fixed arithmetic, unlike
/// std::uniform_real_distribution, whose draws the standard leaves to the
/// library, so the same seed gives the same episodes everywhere.
inline double unit_uniform(std::mt19937& rng) { return static_cast<double>(rng()) * 0x1p-32; }

/// One cart-pole. State: cart position x (m), cart velocity, pole angle θ
/// from upright (rad, positive leaning towards +x), angular velocity.
class CartPole {
 public:
  static constexpr int kStateSize = 4;
  using State = std::array<double, kStateSize>;

  /// Starts an episode: four draws from `rng`, each variable uniform in
  /// [-0.05, 0.05).
  void reset(std::mt19937& rng) {
    for (double& v : s_) v = -kStartRange + 2 * kStartRange * unit_uniform(rng);
    steps_ = 0;
    failed_ = false;
  }

  /// One step of τ with the cart pushed towards -x (action 0) or +x
  /// (action 1). Returns whether the episode is over (the pole fell, the
  /// cart left the track, or the 500th step was taken); the step's reward is
  /// 1 either way.
  bool step(int action) {
    const double f = action == 1 ? kForce : -kForce;
    const double x_dot = s_[1], theta = s_[2], theta_dot = s_[3];
    const double sin_t = std::sin(theta), cos_t = std::cos(theta);
    constexpr double total = kCartMass + kPoleMass;
    // The paper's θ'' with μc = μp = 0: gravity's torque against the cart's
    // acceleration (the push plus the pole's centrifugal pull on the cart),
    // over the pole's effective inertia.
    const double push = (f + kPoleMass * kHalfLength * theta_dot * theta_dot * sin_t) / total;
    const double theta_acc =
        (kGravity * sin_t - cos_t * push) /
        (kHalfLength * (4.0 / 3.0 - kPoleMass * cos_t * cos_t / total));
    // The paper's x'' with μc = 0, which needs the θ'' just found.
    const double x_acc =
        (f + kPoleMass * kHalfLength * (theta_dot * theta_dot * sin_t - theta_acc * cos_t)) / total;
    // Explicit Euler: positions move with the old velocities.
    s_[0] += kTau * x_dot;
    s_[1] += kTau * x_acc;
    s_[2] += kTau * theta_dot;
    s_[3] += kTau * theta_acc;
    ++steps_;
    failed_ = std::abs(s_[0]) > kTrackLimit || std::abs(s_[2]) > kAngleLimit;
    return failed_ || steps_ >= kMaxSteps;
  }

  const State& state() const { return s_; }
  /// Steps taken in this episode: its return so far.
  int steps() const { return steps_; }
  /// Whether the episode ended by failure (not by the 500-step cut-off).
  bool failed() const { return failed_; }

 private:
  State s_{};
  int steps_ = 0;
  bool failed_ = false;
};

}  // namespace cartpole
}  // namespace study
