// Compiled by tests/compile_error/expect_compile_error.cmake: with
// ADAMX_CASE=0 each optimizer sets options it has and it must compile (so the
// other cases fail for their foreign option, not for a slip in this file);
// each other case sets an option of another optimizer (AdaBound's or
// AdaMod's own, the Adam family's on Lion or Adan, Adan's on Adam) or reads a group scalar the
// rule lacks, which must not compile: options.hpp gives each optimizer
// only its own fields, and the setters exist only for those.
#include <adamx/adamx.hpp>

#ifndef ADAMX_CASE
#define ADAMX_CASE 0
#endif

int main() {
  Eigen::VectorXf w = Eigen::VectorXf::Zero(4);
  adamx::AdaBound<float> bound;
  bound.add_group({w});
  bound.set_final_lr(0, 0.05);
  bound.set(0, &adamx::AdaBoundOptions::bound_speed, 1e-2);
  adamx::AdaMod<float> mod;
  mod.add_group({w});
  mod.set_beta_step(0, 0.9);
  adamx::Adam<float> adam;
  adam.add_group({w});
  adam.set(0, &adamx::AdamOptions::lr, 1e-2);
  adamx::RAdam<float> radam;
  radam.add_group({w});
  adamx::AdamWOptions options;
  adamx::Lion<float> lion;
  lion.add_group({w});
  lion.set_betas(0, 0.9, 0.99);
  lion.set_weight_decay(0, 0.1);
  const double gamma = lion.gamma(0);  // 1: Lion has no γ, reported as 1
  adamx::Adan<float> adan;
  adan.add_group({w});
  adan.set_beta3(0, 0.95);  // Adan's own β3 (its n's rate) and ε
  adan.set_eps(0, 1e-6);
  adan.set(0, &adamx::AdanOptions::no_prox, true);
  adamx::Muon<float> muon;
  muon.add_group({w}, adamx::muon_adamw_options());  // a vector: Muon's AdamW group
  muon.set(0, &adamx::MuonOptions::momentum, 0.9);  // Muon's own options, generic setter and typed ones
  muon.set_betas(0, 0.9, 0.99);
  muon.set_eps(0, 1e-8);
#if ADAMX_CASE == 1  // AdaBound's final_lr on Adam
  adam.set_final_lr(0, 0.05);
#elif ADAMX_CASE == 2  // AdaMod's beta_step on RAdam
  radam.set_beta_step(0, 0.9);
#elif ADAMX_CASE == 3  // AdaBound's bound_speed on AdaMod, through the generic setter
  mod.set(0, &adamx::AdaBoundOptions::bound_speed, 1e-2);
#elif ADAMX_CASE == 4  // the field itself is not in AdamW's options
  options.final_lr = 0.05;
#elif ADAMX_CASE == 5  // the Adam family's eps on Lion
  lion.set_eps(0, 1e-8);
#elif ADAMX_CASE == 6  // AMSGrad on Lion
  lion.set_amsgrad(0, true);
#elif ADAMX_CASE == 7  // the Adam family's group scalar h on Lion
  return lion.h(0) > 0 ? 0 : 1;
#elif ADAMX_CASE == 8  // AMSGrad on Adan
  adan.set_amsgrad(0, true);
#elif ADAMX_CASE == 9  // the Adam family's decay mode on Adan
  adan.set_decay_mode(0, adamx::WeightDecayMode::decoupled);
#elif ADAMX_CASE == 10  // Adan's no_prox on Adam, through the generic setter
  adam.set(0, &adamx::AdanOptions::no_prox, true);
#elif ADAMX_CASE == 11  // AMSGrad on Muon (its AdamW groups are plain AdamW)
  muon.set_amsgrad(0, true);
#elif ADAMX_CASE == 12  // Muon's momentum on AdamW, through the generic setter
  adamx::AdamW<float> adamw;
  adamw.add_group({w});
  adamw.set(0, &adamx::MuonOptions::momentum, 0.9);
#endif
  return options.lr > 0 && gamma == 1.0 ? 0 : 1;
}
