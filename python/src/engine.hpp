// The engine behind adamx._core (core.cpp): an adamx::Optimizer of one
// optimizer and one parameter type, chosen by name at run time. Each
// optimizer's four instances are compiled in a file of their own
// (engine_<name>.cpp), so that the extension builds in parallel.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "adamx/adamx.hpp"
#include "adamx/checkpoint.hpp"

namespace py = pybind11;

namespace adamx_python {

// One parameter in a step: its group and index, the address of its values
// and of its gradient's.
using Entry = std::tuple<std::size_t, std::size_t, std::uintptr_t, std::uintptr_t>;
// One parameter in eval()/train(): group, index, address.
using Point = std::tuple<std::size_t, std::size_t, std::uintptr_t>;
// A tensor's shape as adamx sees it: rows x cols.
using Shape = std::pair<std::int64_t, std::int64_t>;

template <class Scalar>
const char* dtype_name() {
  if constexpr (std::is_same<Scalar, float>::value) return "float32";
  if constexpr (std::is_same<Scalar, double>::value) return "float64";
  if constexpr (std::is_same<Scalar, Eigen::bfloat16>::value) return "bfloat16";
  return "float16";
}

// ---- options as Python dicts -------------------------------------------

template <class T>
py::object option_to_python(const T& value) {
  if constexpr (std::is_same<T, double>::value) return py::float_(value);
  else if constexpr (std::is_same<T, bool>::value) return py::bool_(value);
  else return py::str(adamx::OptionEnum<T>::names[static_cast<int>(value)]);
}

template <class T>
void option_from_python(const py::handle& value, T& out, const std::string& where, const char* name) {
  const auto refuse = [&](const char* expected) {
    throw std::invalid_argument(where + "option '" + name + "' must be " + expected + ", not " +
                                std::string(py::str(py::type::of(value).attr("__name__"))));
  };
  if constexpr (std::is_same<T, double>::value) {
    if (py::isinstance<py::bool_>(value) || !(py::isinstance<py::float_>(value) || py::isinstance<py::int_>(value) ||
                                              py::hasattr(value, "__float__")))
      refuse("a number");
    out = value.cast<double>();
  } else if constexpr (std::is_same<T, bool>::value) {
    if (!py::isinstance<py::bool_>(value)) refuse("a bool");
    out = value.cast<bool>();
  } else {
    if (!py::isinstance<py::str>(value)) refuse("a string");
    const std::string text = value.cast<std::string>();
    const auto& names = adamx::OptionEnum<T>::names;
    std::string known;
    for (std::size_t k = 0; k < std::size(names); ++k) {
      if (text == names[k]) {
        out = static_cast<T>(k);
        return;
      }
      known += std::string(k ? ", '" : "'") + names[k] + "'";
    }
    throw std::invalid_argument(where + "option '" + name + "' is '" + text + "'; it must be one of " + known);
  }
}

template <class Options>
py::dict options_to_dict(const Options& o) {
  py::dict out;
  adamx::for_each_option_field<Options>([&](const auto& field) { out[field.name] = option_to_python(o.*field.member); });
  return out;
}

// `base` with every entry of `changes` set, then validated; unknown names
// and wrong types are refused (std::invalid_argument: Python's ValueError).
template <class Options>
Options options_from_dict(Options base, const py::dict& changes, const std::string& where, const std::string& group) {
  for (const auto& item : changes) {
    const std::string key = py::str(item.first);
    bool found = false;
    adamx::for_each_option_field<Options>([&](const auto& field) {
      if (key == field.name) {
        option_from_python(item.second, base.*field.member, where, field.name);
        found = true;
      }
    });
    if (!found) {
      std::string known;
      adamx::for_each_option_field<Options>([&](const auto& field) { known += (known.empty() ? "" : ", ") + std::string(field.name); });
      throw std::invalid_argument(where + "no option named '" + key + "' (its options: " + known + ")");
    }
  }
  adamx::validate(base, group);
  return base;
}

// The view of a tensor of shape rows x cols at `data`, as the rule steps it.
// A rule that steps whole matrices (Muon) sees a parameter of two or more
// dimensions as the matrix size(0) x rest, stored by rows (C order, as torch
// and NumPy store it), like the libtorch adapter; anything else is a column
// of its elements.
template <class View, class Scalar, bool Matrices>
View view_of(Scalar* data, const Shape& shape) {
  if constexpr (Matrices) {
    if (shape.first > 1 && shape.second > 1) {
      using Plain = std::remove_const_t<Scalar>;
      using Matrix = Eigen::Matrix<Plain, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
      using Map = std::conditional_t<std::is_const<Scalar>::value, Eigen::Map<const Matrix>, Eigen::Map<Matrix>>;
      return View(Map(data, shape.first, shape.second));
    }
  }
  return View(data, shape.first, shape.second);
}

// ---- the engine ---------------------------------------------------------

class Engine {
 public:
  virtual ~Engine() = default;
  virtual std::string name() const = 0;
  virtual std::string dtype() const = 0;
  virtual py::dict default_options() const = 0;
  virtual py::dict checked_options(const py::dict& changes, const std::string& group) const = 0;
  virtual std::vector<std::string> slot_names() const = 0;
  virtual std::vector<std::string> scalar_names() const = 0;
  virtual bool steps_matrices() const = 0;
  virtual bool has_evaluation_point() const = 0;
  virtual std::string tensor_problem(const py::dict& options, Shape shape) const = 0;

  virtual std::size_t add_group(const std::vector<Shape>& shapes, const py::dict& options) = 0;
  virtual std::size_t num_groups() const = 0;
  virtual std::vector<Shape> shapes(std::size_t group) const = 0;
  virtual py::dict options(std::size_t group) const = 0;
  virtual void set_options(std::size_t group, const py::dict& options) = 0;
  virtual void set_threads(int threads) = 0;

  virtual std::vector<bool> step(const std::vector<Entry>& entries) = 0;
  virtual void eval(const std::vector<Point>& points) = 0;
  virtual void train(const std::vector<Point>& points) = 0;
  virtual bool in_eval_mode() const = 0;

  virtual std::int64_t step_count(std::size_t group) const = 0;
  virtual std::vector<std::int64_t> parameter_steps(std::size_t group) const = 0;
  virtual py::dict scalars(std::size_t group) const = 0;
  virtual py::dict tensor_state(std::size_t group, std::size_t tensor) const = 0;
  virtual void restore(const py::list& groups) = 0;

  virtual py::bytes save() const = 0;
  virtual void load(const py::bytes& data) = 0;
};

template <class Scalar, class Flavour>
class EngineOf final : public Engine {
  using Opt = adamx::Optimizer<Scalar, Flavour>;
  using Options = typename Opt::Options;
  using State = typename Opt::State;
  using Rule = typename Flavour::Rule;
  using StateScalar = typename Opt::state_scalar_type;

 public:
  std::string name() const override { return Flavour::name; }
  std::string dtype() const override { return dtype_name<Scalar>(); }
  py::dict default_options() const override { return options_to_dict(Options{}); }
  py::dict checked_options(const py::dict& changes, const std::string& group) const override {
    return options_to_dict(options_from_dict(Options{}, changes, where("options"), group));
  }
  std::vector<std::string> slot_names() const override {
    return std::vector<std::string>(Rule::slot_names, Rule::slot_names + Rule::kSlots);
  }
  std::vector<std::string> scalar_names() const override {
    std::vector<std::string> out;
    adamx::for_each_group_scalar<typename State::Scalars>([&](const auto& field) { out.emplace_back(field.name); });
    return out;
  }
  bool steps_matrices() const override { return Opt::matrix_rule; }
  bool has_evaluation_point() const override { return adamx::detail::has_evaluation_point<Rule>::value; }
  std::string tensor_problem(const py::dict& options, Shape shape) const override {
    const Options o = options_from_dict(Options{}, options, where("options"), {});
    const auto view = const_view(nullptr, shape);
    return adamx::detail::rule_tensor_problem<Rule>(o, view.layout().shape(), 0);
  }

  std::size_t add_group(const std::vector<Shape>& shapes, const py::dict& options) override {
    std::lock_guard<std::mutex> lock(mutex_);
    const std::size_t g = opt_.num_groups();
    const Options o = options_from_dict(Options{}, options, where("add_group"), adamx::default_group_name(g));
    std::vector<adamx::ConstTensorRef<Scalar>> views;
    std::vector<std::string> names;
    for (std::size_t j = 0; j < shapes.size(); ++j) {
      if (shapes[j].first < 0 || shapes[j].second < 0)
        throw std::invalid_argument(where("add_group") + "tensor " + std::to_string(j) + " has a negative shape");
      views.push_back(const_view(nullptr, shapes[j]));
      names.push_back(adamx::default_tensor_name(j));
    }
    opt_.add_group(views, o, adamx::default_group_name(g), names);
    tensor_steps_.emplace_back(shapes.size(), 0);
    return g;
  }
  std::size_t num_groups() const override { return opt_.num_groups(); }
  std::vector<Shape> shapes(std::size_t group) const override {
    std::vector<Shape> out;
    for (const auto& t : opt_.layout(checked_group(group)).tensors) out.emplace_back(t.rows, t.cols);
    return out;
  }
  py::dict options(std::size_t group) const override { return options_to_dict(opt_.options(checked_group(group))); }
  void set_options(std::size_t group, const py::dict& options) override {
    std::lock_guard<std::mutex> lock(mutex_);
    checked_group(group);
    const Options o = options_from_dict(opt_.options(group), options, where("set_options"),
                                        adamx::default_group_name(group));
    if (o != opt_.options(group)) opt_.set_options(group, o);
  }
  void set_threads(int threads) override {
    std::lock_guard<std::mutex> lock(mutex_);
    opt_.set_threads(threads);
  }

  std::vector<bool> step(const std::vector<Entry>& entries) override {
    std::lock_guard<std::mutex> lock(mutex_);
    const std::size_t groups = opt_.num_groups();
    params_.assign(groups, {});
    grads_.assign(groups, {});
    subset_.groups.assign(groups, {});
    std::vector<std::size_t> last(groups, 0);
    std::vector<bool> any(groups, false);
    for (const Entry& e : entries) {
      const std::size_t g = std::get<0>(e);
      const std::size_t j = std::get<1>(e);
      checked_group(g);
      const auto& tensors = opt_.layout(g).tensors;
      if (j >= tensors.size())
        throw std::out_of_range(where("step") + "group " + std::to_string(g) + " has no parameter " + std::to_string(j));
      if (any[g] && j <= last[g])
        throw std::invalid_argument(where("step") + "the parameters of group " + std::to_string(g) +
                                    " must be listed once each, in increasing order");
      any[g] = true;
      last[g] = j;
      auto* p = reinterpret_cast<Scalar*>(std::get<2>(e));
      const auto* d = reinterpret_cast<const Scalar*>(std::get<3>(e));
      const Shape shape(tensors[j].rows, tensors[j].cols);
      params_[g].push_back(view_of<adamx::TensorRef<Scalar>, Scalar, Opt::matrix_rule>(p, shape));
      grads_[g].push_back(const_view(d, shape));
      subset_.groups[g].add(j, tensor_steps_[g][j]);
    }
    const std::vector<adamx::StepReport>* reports = nullptr;
    {
      py::gil_scoped_release release;
      reports = &opt_.step(params_, grads_, subset_);
    }
    std::vector<bool> applied(groups, false);
    for (std::size_t g = 0; g < groups; ++g) {
      if (subset_.groups[g].empty()) continue;
      applied[g] = (*reports)[g].applied;
      if (applied[g])
        for (const std::size_t j : subset_.groups[g].tensors) ++tensor_steps_[g][j];
    }
    return applied;
  }

  void eval(const std::vector<Point>& points) override { move_point(points, true); }
  void train(const std::vector<Point>& points) override { move_point(points, false); }
  bool in_eval_mode() const override { return opt_.in_eval_mode(); }

  std::int64_t step_count(std::size_t group) const override { return opt_.step_count(checked_group(group)); }
  std::vector<std::int64_t> parameter_steps(std::size_t group) const override {
    return tensor_steps_.at(checked_group(group));
  }
  py::dict scalars(std::size_t group) const override {
    const State s = opt_.state_without_arrays(checked_group(group));
    py::dict out;
    adamx::for_each_group_scalar<typename State::Scalars>([&](const auto& field) { out[field.name] = s.*field.member; });
    return out;
  }
  py::dict tensor_state(std::size_t group, std::size_t tensor) const override {
    checked_group(group);
    if (tensor >= opt_.layout(group).tensors.size())
      throw std::out_of_range(where("tensor_state") + "group " + std::to_string(group) + " has no parameter " +
                              std::to_string(tensor));
    const auto view = opt_.state_view(group, tensor);
    py::dict out;
    for (int k = 0; k < Rule::kSlots; ++k) {
      const auto& slot = view.slot(k);
      if (slot.size() == 0) continue;
      py::array_t<StateScalar> copy(static_cast<py::ssize_t>(slot.size()));
      std::memcpy(copy.mutable_data(), slot.data(), sizeof(StateScalar) * static_cast<std::size_t>(slot.size()));
      out[Rule::slot_names[k]] = copy;
    }
    return out;
  }

  // `groups`: one dict per group with "t" (int), "options" (dict),
  // "scalars" (dict), "tensors" (a list of dicts slot name -> 1-D float
  // array of the tensor's size; a slot the options do not keep is absent)
  // and "steps" (every parameter's count, 0 <= count <= t). Every value is
  // checked before anything changes.
  void restore(const py::list& groups) override {
    std::lock_guard<std::mutex> lock(mutex_);
    const std::string at = where("restore");
    if (groups.size() != opt_.num_groups())
      throw std::invalid_argument(at + "the state has " + std::to_string(groups.size()) + " groups, this optimizer " +
                                  std::to_string(opt_.num_groups()));
    std::vector<State> states = opt_.state();
    std::vector<std::vector<std::int64_t>> steps(states.size());
    for (std::size_t g = 0; g < states.size(); ++g) {
      const std::string group = "group " + std::to_string(g) + ": ";
      const py::dict d = groups[g].cast<py::dict>();
      State& s = states[g];
      s.t = d["t"].cast<std::int64_t>();
      s.options = options_from_dict(Options{}, d["options"].cast<py::dict>(), at + group, s.name);
      const py::dict scalars = d["scalars"].cast<py::dict>();
      adamx::for_each_group_scalar<typename State::Scalars>([&](const auto& field) {
        if (!scalars.contains(field.name))
          throw std::invalid_argument(at + group + "the state has no '" + field.name + "'");
        s.*field.member = scalars[field.name].template cast<double>();
      });
      const py::list tensors = d["tensors"].cast<py::list>();
      const py::list counts = d["steps"].cast<py::list>();
      if (tensors.size() != s.tensors.size() || counts.size() != s.tensors.size())
        throw std::invalid_argument(at + group + "the state has " + std::to_string(tensors.size()) +
                                    " parameters, this group " + std::to_string(s.tensors.size()));
      for (std::size_t j = 0; j < s.tensors.size(); ++j) {
        const std::string parameter = group + "parameter " + std::to_string(j) + ": ";
        const py::dict slots = tensors[j].cast<py::dict>();
        auto& ts = s.tensors[j];
        for (int k = 0; k < Rule::kSlots; ++k) {
          auto& array = ts.slot(k);
          const char* slot_name = Rule::slot_names[k];
          if (!slots.contains(slot_name)) {
            array.resize(0);
            continue;
          }
          const auto values = py::array_t<StateScalar, py::array::c_style | py::array::forcecast>::ensure(slots[slot_name]);
          if (!values || values.ndim() != 1)
            throw std::invalid_argument(at + parameter + "'" + slot_name + "' must be a 1-D array of numbers");
          array.resize(values.shape(0));
          if (values.shape(0) > 0)
            std::memcpy(array.data(), values.data(), sizeof(StateScalar) * static_cast<std::size_t>(values.shape(0)));
        }
        for (const auto& key : slots) {
          const std::string slot_name = py::str(key.first);
          bool known = false;
          for (int k = 0; k < Rule::kSlots; ++k) known = known || slot_name == Rule::slot_names[k];
          if (!known) throw std::invalid_argument(at + parameter + "this optimizer keeps no '" + slot_name + "'");
        }
        const std::int64_t count = counts[j].cast<std::int64_t>();
        if (count < 0 || count > s.t)
          throw std::invalid_argument(at + parameter + "has taken " + std::to_string(count) +
                                      " steps and its group " + std::to_string(s.t) +
                                      " (a parameter steps only with its group)");
        steps[g].push_back(count);
      }
    }
    opt_.restore(states);  // checks structure and values; changes nothing if it throws
    tensor_steps_ = std::move(steps);
  }

  py::bytes save() const override {
    std::ostringstream out;
    adamx::save_checkpoint(opt_, out);
    std::string bytes = out.str();
    // The per-parameter counts follow the checkpoint as int64 little-endian.
    return py::bytes(bytes);
  }
  void load(const py::bytes& data) override {
    std::lock_guard<std::mutex> lock(mutex_);
    std::istringstream in{std::string(data)};
    adamx::load_checkpoint(opt_, in);
    for (std::size_t g = 0; g < tensor_steps_.size(); ++g)
      std::fill(tensor_steps_[g].begin(), tensor_steps_[g].end(), opt_.step_count(g));
  }

 private:
  static adamx::ConstTensorRef<Scalar> const_view(const Scalar* data, const Shape& shape) {
    return view_of<adamx::ConstTensorRef<Scalar>, const Scalar, Opt::matrix_rule>(data, shape);
  }
  static std::string where(const char* function) {
    return std::string("adamx.") + Flavour::name + ": " + function + ": ";
  }
  std::size_t checked_group(std::size_t group) const {
    if (group >= opt_.num_groups())
      throw std::out_of_range(std::string("adamx.") + Flavour::name + ": group " + std::to_string(group) +
                              " does not exist (there are " + std::to_string(opt_.num_groups()) + ")");
    return group;
  }
  void move_point(const std::vector<Point>& points, bool to_eval) {
    if constexpr (adamx::detail::has_evaluation_point<Rule>::value) {
      std::lock_guard<std::mutex> lock(mutex_);
      const std::size_t groups = opt_.num_groups();
      params_.assign(groups, {});
      scratch_.clear();
      std::vector<std::size_t> next(groups, 0);
      for (const Point& p : points) {
        const std::size_t g = checked_group(std::get<0>(p));
        const std::size_t j = std::get<1>(p);
        const auto& tensors = opt_.layout(g).tensors;
        if (j != next[g])
          throw std::invalid_argument(where(to_eval ? "eval" : "train") +
                                      "every parameter must be listed once, in order");
        ++next[g];
        // A parameter that has not stepped holds its starting point, which
        // is also the point to evaluate; its slots are still zeros, and the
        // rule would move it towards them. It is moved in a copy, left as it is.
        Scalar* data = reinterpret_cast<Scalar*>(std::get<2>(p));
        if (tensor_steps_[g][j] == 0) {
          const std::size_t n = static_cast<std::size_t>(tensors[j].rows * tensors[j].cols);
          scratch_.emplace_back(data, data + n);
          data = scratch_.back().data();
        }
        params_[g].push_back(
            view_of<adamx::TensorRef<Scalar>, Scalar, Opt::matrix_rule>(data, Shape(tensors[j].rows, tensors[j].cols)));
      }
      for (std::size_t g = 0; g < groups; ++g)
        if (next[g] != opt_.layout(g).tensors.size())
          throw std::invalid_argument(where(to_eval ? "eval" : "train") + "every parameter must be listed once, in order");
      py::gil_scoped_release release;
      if (to_eval) opt_.eval(params_);
      else opt_.train(params_);
    } else {
      (void)points;
      throw std::logic_error(where(to_eval ? "eval" : "train") + "this optimizer has no evaluation point");
    }
  }

  Opt opt_;
  std::vector<std::vector<std::int64_t>> tensor_steps_;
  std::vector<std::vector<adamx::TensorRef<Scalar>>> params_;
  std::vector<std::vector<adamx::ConstTensorRef<Scalar>>> grads_;
  adamx::StepSubset subset_;
  std::vector<std::vector<Scalar>> scratch_;  // eval()/train(): copies of parameters that have not stepped
  mutable std::mutex mutex_;
};

template <class Flavour>
std::unique_ptr<Engine> make_for_dtype(const std::string& dtype) {
  if (dtype == "float32") return std::make_unique<EngineOf<float, Flavour>>();
  if (dtype == "float64") return std::make_unique<EngineOf<double, Flavour>>();
  if (dtype == "bfloat16") return std::make_unique<EngineOf<Eigen::bfloat16, Flavour>>();
  if (dtype == "float16") return std::make_unique<EngineOf<Eigen::half, Flavour>>();
  throw std::invalid_argument("adamx: dtype '" + dtype +
                              "' is not one adamx steps (float32, float64, bfloat16, float16)");
}

// make_engine_<Name>(dtype), one per optimizer, each defined in engine_<name>.cpp.
#define ADAMX_PY_DECLARE(Name) std::unique_ptr<Engine> make_engine_##Name(const std::string& dtype);
ADAMX_FOR_EACH_OPTIMIZER(ADAMX_PY_DECLARE)
#undef ADAMX_PY_DECLARE

}  // namespace adamx_python
