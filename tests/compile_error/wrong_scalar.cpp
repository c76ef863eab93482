// Compiled by tests/compile_error/expect_compile_error.cmake: with
// ADAMX_CASE=0 every tensor has the optimizer's scalar type and it must
// compile (so the other cases fail for their wrong type, not for a slip in
// this file); each other case gives one tensor a wrong scalar type, and the
// compiler must stop with adamx's message naming both types.
#include <adamx/adamx.hpp>

#include <type_traits>
#include <vector>

#ifndef ADAMX_CASE
#define ADAMX_CASE 0
#endif

// `Right`, or `Wrong` in case `k`.
template <int k, class Right, class Wrong>
using right_unless = std::conditional_t<ADAMX_CASE == k, Wrong, Right>;

template <class T>
using Vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;

int main() {
  {  // 1: a double gradient, in braced lists, to an optimizer over float.
    Vector<float> w = Vector<float>::Zero(4);
    Vector<right_unless<1, float, double>> g = decltype(g)::Ones(4);
    adamx::AdamX<float> opt;
    opt.add_group({w});
    opt.step({{w}}, {{g}});
  }
  {  // 2: views of float parameters, in containers, to an optimizer over double.
    Vector<double> w = Vector<double>::Zero(4), g = Vector<double>::Ones(4);
    Vector<float> wf = Vector<float>::Zero(4);
    adamx::AdamX<double> opt;
    opt.add_group({w});
    std::vector<std::vector<adamx::TensorRef<right_unless<2, double, float>>>> params;
#if ADAMX_CASE == 2
    params = {{wf}};
#else
    params = {{w}};
    static_cast<void>(wf);
#endif
    const std::vector<std::vector<adamx::ConstTensorRef<double>>> grads = {{g}};
    opt.step(params, grads);
  }
  {  // 3: a bfloat16 gradient to an optimizer over float.
    Vector<float> w = Vector<float>::Zero(4);
    Vector<right_unless<3, float, Eigen::bfloat16>> g = decltype(g)::Ones(4);
    adamx::Adam<float> opt;
    opt.add_group({w});
    opt.step({{w}}, {{g}});
  }
  {  // 4: add_group given a double tensor by an optimizer over float.
    Vector<float> w = Vector<float>::Zero(4);
    Vector<right_unless<4, float, double>> shape = decltype(shape)::Zero(4);
    adamx::AdamW<float> opt;
    opt.add_group({shape});
    opt.step({{w}}, {{w}});
  }
  {  // 5: half parameters to an optimizer over bfloat16.
    Vector<right_unless<5, Eigen::bfloat16, Eigen::half>> w = decltype(w)::Zero(4);
    Vector<Eigen::bfloat16> w16 = Vector<Eigen::bfloat16>::Zero(4), g = Vector<Eigen::bfloat16>::Ones(4);
    adamx::AdamX<Eigen::bfloat16> opt;
    opt.add_group({w16});
    opt.step({{w}}, {{g}});
  }
  return 0;
}
