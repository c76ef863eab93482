// The C++ library's side of the Python package's bitwise test
// (tests/python/test_torch.py, BitwiseWithTheLibrary): steps an
// adamx::Optimizer directly, without the package's binding, on inputs the
// test wrote, and writes what it got, for the test to compare bit for bit
// with the same steps taken through adamx.torch.
//
//   python_stepper <dir>
//
// <dir>/spec.txt, one item per line:
//   optimizer <Name>          (every optimizer in float32; AdamX in every dtype)
//   dtype float32|float64|bfloat16|float16
//   option <name> <value>     (numbers in Python's repr, true/false, enum names)
//   shapes <rows>x<cols> ...  (one per tensor, in one group)
//   present <01...> ...       (one word per step: which tensors have a gradient)
// <dir>/params.bin: the tensors' initial values, concatenated, raw;
// <dir>/grads.bin: per step, every tensor's gradient, concatenated, raw.
// Writes <dir>/out.bin: the final parameters, then every tensor's slots in
// slot order (empty slots skipped), raw; and <dir>/scalars.txt: t, then the
// group scalars as name and C99 hex float.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "adamx/adamx.hpp"

namespace {

struct Spec {
  std::string optimizer, dtype;
  std::vector<std::pair<std::string, std::string>> options;
  std::vector<std::pair<long, long>> shapes;
  std::vector<std::string> present;
};

Spec read_spec(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  Spec spec;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string key;
    words >> key;
    if (key == "optimizer") words >> spec.optimizer;
    else if (key == "dtype") words >> spec.dtype;
    else if (key == "option") {
      std::string name, value;
      words >> name >> value;
      spec.options.emplace_back(name, value);
    } else if (key == "shapes") {
      std::string shape;
      while (words >> shape) {
        const auto x = shape.find('x');
        spec.shapes.emplace_back(std::stol(shape.substr(0, x)), std::stol(shape.substr(x + 1)));
      }
    } else if (key == "present") {
      std::string word;
      while (words >> word) spec.present.push_back(word);
    } else if (!key.empty()) {
      throw std::runtime_error("unknown spec line: " + line);
    }
  }
  return spec;
}

template <class T>
void set_value(T& field, const std::string& text) {
  if constexpr (std::is_same<T, double>::value) field = std::strtod(text.c_str(), nullptr);
  else if constexpr (std::is_same<T, bool>::value) field = text == "true";
  else {
    const auto& names = adamx::OptionEnum<T>::names;
    for (std::size_t k = 0; k < std::size(names); ++k)
      if (text == names[k]) field = static_cast<T>(k);
  }
}

template <class T>
std::vector<T> read_raw(const std::string& path, std::size_t count) {
  std::vector<T> out(count);
  std::ifstream in(path, std::ios::binary);
  in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(count * sizeof(T)));
  if (!in || in.peek() != std::char_traits<char>::eof()) throw std::runtime_error(path + ": wrong size");
  return out;
}

// Muon's matrices as the Python package hands them over: stored by rows.
template <class View, class Scalar, bool Matrices>
View view_of(Scalar* data, long rows, long cols) {
  if constexpr (Matrices) {
    if (rows > 1 && cols > 1) {
      using Matrix = Eigen::Matrix<std::remove_const_t<Scalar>, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
      using Map = std::conditional_t<std::is_const<Scalar>::value, Eigen::Map<const Matrix>, Eigen::Map<Matrix>>;
      return View(Map(data, rows, cols));
    }
  }
  return View(data, rows, cols);
}

template <class Scalar, class Flavour>
void run(const Spec& spec, const std::string& dir) {
  using Opt = adamx::Optimizer<Scalar, Flavour>;
  typename Opt::Options options;
  for (const auto& option : spec.options) {
    const std::string& name = option.first;
    const std::string& value = option.second;
    bool found = false;
    adamx::for_each_option_field<typename Opt::Options>([&](const auto& field) {
      if (name == field.name) {
        set_value(options.*field.member, value);
        found = true;
      }
    });
    if (!found) throw std::runtime_error("unknown option " + name);
  }
  std::size_t total = 0;
  for (const auto& s : spec.shapes) total += static_cast<std::size_t>(s.first * s.second);
  std::vector<Scalar> params = read_raw<Scalar>(dir + "/params.bin", total);
  const std::vector<Scalar> grads = read_raw<Scalar>(dir + "/grads.bin", total * spec.present.size());

  Opt opt;
  std::vector<adamx::ConstTensorRef<Scalar>> shapes;
  for (const auto& s : spec.shapes)
    shapes.push_back(view_of<adamx::ConstTensorRef<Scalar>, const Scalar, Opt::matrix_rule>(nullptr, s.first, s.second));
  opt.add_group(shapes, options);
  std::vector<std::int64_t> counts(spec.shapes.size(), 0);
  for (std::size_t step = 0; step < spec.present.size(); ++step) {
    std::vector<std::vector<adamx::TensorRef<Scalar>>> p(1);
    std::vector<std::vector<adamx::ConstTensorRef<Scalar>>> g(1);
    adamx::StepSubset subset;
    subset.groups.resize(1);
    std::size_t offset = 0;
    for (std::size_t j = 0; j < spec.shapes.size(); ++j) {
      const long rows = spec.shapes[j].first, cols = spec.shapes[j].second;
      if (spec.present[step][j] == '1') {
        p[0].push_back(view_of<adamx::TensorRef<Scalar>, Scalar, Opt::matrix_rule>(params.data() + offset, rows, cols));
        g[0].push_back(view_of<adamx::ConstTensorRef<Scalar>, const Scalar, Opt::matrix_rule>(
            grads.data() + step * total + offset, rows, cols));
        subset.groups[0].add(j, counts[j]);
      }
      offset += static_cast<std::size_t>(rows * cols);
    }
    const auto& reports = opt.step(p, g, subset);
    if (!subset.groups[0].empty() && reports[0].applied)
      for (const std::size_t j : subset.groups[0].tensors) ++counts[j];
  }
  std::ofstream out(dir + "/out.bin", std::ios::binary);
  out.write(reinterpret_cast<const char*>(params.data()), static_cast<std::streamsize>(params.size() * sizeof(Scalar)));
  for (std::size_t j = 0; j < spec.shapes.size(); ++j) {
    const auto view = opt.state_view(0, j);
    for (int k = 0; k < view.kSlots; ++k) {
      const auto& slot = view.slot(k);
      out.write(reinterpret_cast<const char*>(slot.data()),
                static_cast<std::streamsize>(slot.size() * sizeof(typename Opt::state_scalar_type)));
    }
  }
  std::ofstream scalars(dir + "/scalars.txt");
  scalars << "t " << opt.step_count(0) << "\n";
  const auto state = opt.state_without_arrays(0);
  adamx::for_each_group_scalar<typename Opt::State::Scalars>([&](const auto& field) {
    char text[64];
    std::snprintf(text, sizeof text, "%a", state.*field.member);
    scalars << field.name << " " << text << "\n";
  });
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: python_stepper <dir>\n";
    return 2;
  }
  try {
    const std::string dir = argv[1];
    const Spec spec = read_spec(dir + "/spec.txt");
    if (spec.dtype == "float32") {
#define ADAMX_STEPPER_CASE(Name) \
  if (spec.optimizer == #Name) return run<float, adamx::flavour::Name>(spec, dir), 0;
      ADAMX_FOR_EACH_OPTIMIZER(ADAMX_STEPPER_CASE)
#undef ADAMX_STEPPER_CASE
    } else if (spec.optimizer == "AdamX") {
      if (spec.dtype == "float64") return run<double, adamx::flavour::AdamX>(spec, dir), 0;
      if (spec.dtype == "bfloat16") return run<Eigen::bfloat16, adamx::flavour::AdamX>(spec, dir), 0;
      if (spec.dtype == "float16") return run<Eigen::half, adamx::flavour::AdamX>(spec, dir), 0;
    }
    std::cerr << "python_stepper: no case for " << spec.optimizer << " " << spec.dtype << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "python_stepper: " << e.what() << "\n";
    return 1;
  }
}
