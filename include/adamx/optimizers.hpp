// The optimizers by name: Adam, AdamW, AdamX and the baselines RAdam,
// AdaBound and AdaMod, each an Optimizer<Scalar, flavour> (optimizer.hpp).
// A header of its own so that adamx/core.hpp can offer them without the
// checkpoint I/O that adamx/adamx.hpp brings.
#pragma once

#include "adamx/abi.hpp"
#include "adamx/optimizer.hpp"

/// Every optimizer of the library, by name: expands X(Name) once per
/// optimizer, where Name is both its alias (adamx::Name<Scalar>, below) and
/// its flavour (adamx::flavour::Name). The sharded driver's aliases
/// (adamx::mpi::Name) and the checkpoint conversions, which must recognise
/// every optimizer's files, are made from this list, so an optimizer added
/// here is offered there too.
#define ADAMX_FOR_EACH_OPTIMIZER(X) X(Adam) X(AdamW) X(AdamX) X(RAdam) X(AdaBound) X(AdaMod)

ADAMX_NAMESPACE_BEGIN

// adamx::Name<Scalar> = Optimizer<Scalar, flavour::Name>, one alias per entry
// of the list above, so the list and the aliases cannot disagree:
//  - Adam (Kingma & Ba 2015) with PyTorch's semantics: AdamX with γ ≡ 1.
//  - AdamW (Loshchilov & Hutter 2019): Adam with decoupled weight decay,
//    λ = 1e-2 by default.
//  - AdamX: Adam whose second moment is scaled per group by γ (β3 = 0.99,
//    β_n = 0.99).
//  - RAdam (Liu et al. 2020): Adam's step rectified by r_t once ρ_t > 5, α·m̂
//    before.
//  - AdaBound (Luo et al. 2019): per-element step sizes clipped to bounds that
//    close on final_lr (SGD) as t grows.
//  - AdaMod (Ding et al. 2019): per-element step sizes capped by their own EMA
//    (rate beta_step); one more word of state per parameter.
#define ADAMX_OPTIMIZER_ALIAS(Name) \
  template <class Scalar>           \
  using Name = Optimizer<Scalar, flavour::Name>;
ADAMX_FOR_EACH_OPTIMIZER(ADAMX_OPTIMIZER_ALIAS)
#undef ADAMX_OPTIMIZER_ALIAS

ADAMX_NAMESPACE_END  // namespace adamx
