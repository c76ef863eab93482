// The library's checkpoint files as Python dicts (adamx/checkpoint.py is
// the public face). Nothing here reads or writes the format itself: loading
// reads the header to learn the optimizer, its scalar type and its groups
// (read_checkpoint_header, read_checkpoint_groups), builds that
// adamx::Optimizer and loads the file into it with adamx::load_checkpoint,
// so every check of the C++ loader applies, with its messages; saving builds
// the optimizer from the dict, restore()s the state (which validates it) and
// writes it with adamx::save_checkpoint (a temporary file renamed over the
// target). The dict:
//
//   {"optimizer": "AdamX", "dtype": "float32", "state_dtype": "float32",
//    "version": 3,
//    "groups": [{"name": "fc1", "options": {adamx's option names},
//                "t": 10, "scalars": {"gamma": ..., "h": ...},
//                "tensors": [{"name": "weight", "shape": (rows, cols),
//                             "row_major": True,
//                             "slots": {"m": 1-D array, "v": ...}}]}]}
//
// dtype is the parameters' type in NumPy's words (float32, float64, bfloat16,
// float16), state_dtype the arrays' (float32 for all but float64). A slot
// the group's options do not keep is absent. The arrays are the tensor's
// elements in its memory order (row by row when row_major).
#include "checkpoint_file.hpp"

#include <filesystem>
#include <limits>

#include "engine.hpp"

namespace adamx_python {
namespace {

using namespace pybind11::literals;
namespace fs = std::filesystem;

template <class T>
struct Type {
  using type = T;
};

// NumPy's name of the type the C++ library calls `cpp` ("float" ->
// "float32"); empty if there is none.
std::string numpy_dtype(const std::string& cpp) {
  if (cpp == "float") return "float32";
  if (cpp == "double") return "float64";
  if (cpp == "bfloat16") return "bfloat16";
  if (cpp == "half") return "float16";
  return {};
}

// Calls action(Type<Scalar>{}, Type<Flavour>{}) for the optimizer called
// `name` over parameters of NumPy type `dtype`; false if there is none.
template <class Action>
bool with_optimizer(const std::string& name, const std::string& dtype, Action&& action) {
  const auto with_scalar = [&](auto flavour) {
    if (dtype == "float32") action(Type<float>{}, flavour);
    else if (dtype == "float64") action(Type<double>{}, flavour);
    else if (dtype == "bfloat16") action(Type<Eigen::bfloat16>{}, flavour);
    else if (dtype == "float16") action(Type<Eigen::half>{}, flavour);
    else return false;
    return true;
  };
#define ADAMX_PY_IF_NAMED(Name) \
  if (name == adamx::flavour::Name::name) return with_scalar(Type<adamx::flavour::Name>{});
  ADAMX_FOR_EACH_OPTIMIZER(ADAMX_PY_IF_NAMED)
#undef ADAMX_PY_IF_NAMED
  return false;
}

// A view of no memory with the shape and memory order of `shape`: what
// add_group needs to make a group of such tensors.
template <class Scalar>
adamx::ConstTensorRef<Scalar> shape_view(const adamx::TensorShape& shape) {
  if (shape.row_major) {
    using RowMajor = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    return Eigen::Map<const RowMajor>(static_cast<const Scalar*>(nullptr), shape.rows, shape.cols);
  }
  return adamx::ConstTensorRef<Scalar>(static_cast<const Scalar*>(nullptr), shape.rows, shape.cols);
}

template <class Map>
py::array copy_array(const Map& values) {
  using T = typename Map::Scalar;
  py::array_t<T> out(static_cast<py::ssize_t>(values.size()));
  if (values.size() > 0)
    std::memcpy(out.mutable_data(), values.data(), sizeof(T) * static_cast<std::size_t>(values.size()));
  return std::move(out);
}

// ---- load -----------------------------------------------------------------

template <class Scalar, class Flavour>
py::dict load_as(const std::string& path, std::uint32_t version) {
  using Opt = adamx::Optimizer<Scalar, Flavour>;
  using State = typename Opt::State;
  using StateScalar = typename Opt::state_scalar_type;
  using Rule = typename Flavour::Rule;
  const std::string file = " (file '" + path + "')";
  const std::vector<State> groups = adamx::read_checkpoint_groups<Scalar, Flavour>(path);

  // The optimizer built below allocates the tensors the header lists before
  // load_checkpoint reads their arrays; every element takes at least one
  // state value in the file, so a header listing more elements than the file
  // has room for is refused first (a corrupt size must not allocate).
  std::error_code error;
  const std::uintmax_t bytes = fs::file_size(path, error);
  if (!error) {
    const std::uintmax_t room = bytes / sizeof(StateScalar);
    std::uintmax_t elements = 0;
    for (const State& g : groups)
      for (const auto& ts : g.tensors) {
        if (ts.rows == 0 || ts.cols == 0) continue;
        const auto rows = static_cast<std::uintmax_t>(ts.rows), cols = static_cast<std::uintmax_t>(ts.cols);
        if (rows > room || cols > room / rows || elements + rows * cols > room)
          throw adamx::CheckpointError("adamx::load_checkpoint: truncated: the header lists more state than the file's " +
                                       std::to_string(bytes) + " bytes can hold (at tensor '" + g.name + "." +
                                       ts.name + "' of shape " + ts.describe() + ")" + file);
        elements += rows * cols;
      }
  }

  Opt opt;
  for (const State& g : groups) {
    std::vector<adamx::ConstTensorRef<Scalar>> views;
    std::vector<std::string> names;
    for (const auto& ts : g.tensors) {
      views.push_back(shape_view<Scalar>(ts));
      names.push_back(ts.name);
    }
    try {
      opt.add_group(views, g.options, g.name, names);
    } catch (const std::invalid_argument& problem) {
      throw adamx::CheckpointError(std::string("adamx::load_checkpoint: invalid value in the checkpoint: ") +
                                   problem.what() + file);
    }
  }
  {
    py::gil_scoped_release release;
    adamx::load_checkpoint(opt, fs::path(path));
  }

  py::list out_groups;
  for (std::size_t g = 0; g < opt.num_groups(); ++g) {
    const State s = opt.state_without_arrays(g);
    py::dict scalars;
    adamx::for_each_group_scalar<typename State::Scalars>([&](const auto& field) { scalars[field.name] = s.*field.member; });
    py::list tensors;
    for (std::size_t j = 0; j < s.tensors.size(); ++j) {
      const auto& shape = s.tensors[j];
      const auto view = opt.state_view(g, j);
      py::dict slots;
      for (int k = 0; k < Rule::kSlots; ++k)
        if (Opt::keeps_slot(s.options, k)) slots[Rule::slot_names[k]] = copy_array(view.slot(k));
      tensors.append(py::dict("name"_a = shape.name, "shape"_a = py::make_tuple(shape.rows, shape.cols),
                              "row_major"_a = shape.row_major, "slots"_a = slots));
    }
    out_groups.append(py::dict("name"_a = s.name, "options"_a = options_to_dict(s.options), "t"_a = s.t,
                               "scalars"_a = scalars, "tensors"_a = tensors));
  }
  return py::dict("optimizer"_a = Flavour::name, "dtype"_a = dtype_name<Scalar>(),
                  "state_dtype"_a = dtype_name<StateScalar>(), "version"_a = version, "groups"_a = out_groups);
}

py::dict load_file(const std::string& path) {
  const adamx::CheckpointHeader header = adamx::read_checkpoint_header(path);
  const std::string file = " (file '" + path + "')";
  const std::string dtype = numpy_dtype(header.parameter_type);
  // The state type each parameter type has (float for all but double).
  const std::string state = dtype == "float64" ? "double" : "float";
  if (dtype.empty() || header.state_type != state)
    throw adamx::CheckpointError("adamx::load_checkpoint: the checkpoint holds " + header.parameter_type +
                                 " parameters with " + header.state_type +
                                 " state, which no adamx optimizer has" + file);
  py::dict out;
  const bool known = with_optimizer(header.optimizer, dtype, [&](auto scalar, auto flavour) {
    out = load_as<typename decltype(scalar)::type, typename decltype(flavour)::type>(path, header.version);
  });
  if (!known)
    throw adamx::CheckpointError("adamx::load_checkpoint: the checkpoint was saved by '" + header.optimizer +
                                 "', an optimizer this adamx does not have" + file);
  return out;
}

// ---- save -----------------------------------------------------------------

template <class Scalar, class Flavour>
void save_as(const std::string& path, const py::dict& checkpoint) {
  using Opt = adamx::Optimizer<Scalar, Flavour>;
  using Options = typename Opt::Options;
  using State = typename Opt::State;
  using StateScalar = typename Opt::state_scalar_type;
  using Rule = typename Flavour::Rule;
  const std::string at = "adamx.checkpoint.save: ";

  Opt opt;
  std::vector<State> states;
  for (const auto& item : checkpoint["groups"].cast<py::list>()) {
    const py::dict d = item.cast<py::dict>();
    State s;
    s.name = d["name"].cast<std::string>();
    const std::string where = at + "group '" + s.name + "': ";
    s.options = options_from_dict(Options{}, d["options"].cast<py::dict>(), where, s.name);
    s.t = d["t"].cast<std::int64_t>();

    const py::dict scalars = d["scalars"].cast<py::dict>();
    std::vector<std::string> declared;
    std::string listed;
    adamx::for_each_group_scalar<typename State::Scalars>([&](const auto& field) {
      declared.emplace_back(field.name);
      listed += (listed.empty() ? "" : ", ") + std::string(field.name);
    });
    adamx::for_each_group_scalar<typename State::Scalars>([&](const auto& field) {
      if (!scalars.contains(field.name))
        throw std::invalid_argument(where + "no group scalar '" + field.name + "' (" + Flavour::name + " keeps " +
                                    listed + ")");
      s.*field.member = scalars[field.name].template cast<double>();
    });
    for (const auto& key : scalars) {
      const std::string name = py::str(key.first);
      if (std::find(declared.begin(), declared.end(), name) == declared.end())
        throw std::invalid_argument(where + Flavour::name + " keeps no group scalar '" + name + "' (" +
                                    (declared.empty() ? std::string("it keeps none") : "only " + listed) + ")");
    }

    std::vector<adamx::ConstTensorRef<Scalar>> views;
    std::vector<std::string> names;
    for (const auto& entry : d["tensors"].cast<py::list>()) {
      const py::dict t = entry.cast<py::dict>();
      typename State::Tensor ts;
      ts.name = t["name"].cast<std::string>();
      const std::string tensor = where + "tensor '" + ts.name + "': ";
      const auto shape = t["shape"].cast<std::pair<std::int64_t, std::int64_t>>();
      if (shape.first < 0 || shape.second < 0 ||
          (shape.second > 0 && shape.first > std::numeric_limits<std::int64_t>::max() / 2 / shape.second))
        throw std::invalid_argument(tensor + "invalid shape (" + std::to_string(shape.first) + ", " +
                                    std::to_string(shape.second) + ")");
      ts.rows = static_cast<Eigen::Index>(shape.first);
      ts.cols = static_cast<Eigen::Index>(shape.second);
      // A vector has no memory order (TensorShape).
      ts.row_major = t["row_major"].cast<bool>() && ts.rows > 1 && ts.cols > 1;
      const py::dict slots = t["slots"].cast<py::dict>();
      for (const auto& slot : slots) {
        const std::string name = py::str(slot.first);
        int k = 0;
        while (k < Rule::kSlots && name != Rule::slot_names[k]) ++k;
        if (k == Rule::kSlots) {
          std::string known;
          for (int i = 0; i < Rule::kSlots; ++i) known += (i ? ", " : "") + std::string(Rule::slot_names[i]);
          throw std::invalid_argument(tensor + Flavour::name + " keeps no state slot '" + name + "' (its slots: " +
                                      known + ")");
        }
        if (!py::isinstance<py::array_t<StateScalar>>(slot.second))
          throw std::invalid_argument(tensor + "slot '" + name + "' must be a NumPy array of " +
                                      dtype_name<StateScalar>() + ", the state type of " + dtype_name<Scalar>() +
                                      " parameters");
        const auto values = py::array_t<StateScalar, py::array::c_style | py::array::forcecast>::ensure(slot.second);
        if (values.ndim() != 1)
          throw std::invalid_argument(tensor + "slot '" + name + "' must be a 1-D array (the elements in memory order)");
        // Sizes are checked by restore(); this one first, so that a shape
        // far larger than its arrays is refused before add_group allocates it.
        if (values.shape(0) != ts.size())
          throw std::invalid_argument(tensor + "slot '" + name + "' has " + std::to_string(values.shape(0)) +
                                      " elements where its shape " + ts.describe() + " has " +
                                      std::to_string(ts.size()));
        auto& array = ts.slot(k);
        array.resize(values.shape(0));
        if (values.shape(0) > 0)
          std::memcpy(array.data(), values.data(), sizeof(StateScalar) * static_cast<std::size_t>(values.shape(0)));
      }
      if (slots.size() == 0 && ts.size() > 0)
        throw std::invalid_argument(tensor + "no state slots for its " + std::to_string(ts.size()) + " elements");
      views.push_back(shape_view<Scalar>(ts));
      names.push_back(ts.name);
      s.tensors.push_back(std::move(ts));
    }
    opt.add_group(views, s.options, s.name, names);
    states.push_back(std::move(s));
  }
  opt.restore(states);  // every value and size checked; std::invalid_argument (ValueError) if not
  py::gil_scoped_release release;
  adamx::save_checkpoint(opt, fs::path(path));
}

void save_file(const std::string& path, const py::dict& checkpoint) {
  const std::string name = checkpoint["optimizer"].cast<std::string>();
  const std::string dtype = checkpoint["dtype"].cast<std::string>();
  const bool known = with_optimizer(name, dtype, [&](auto scalar, auto flavour) {
    save_as<typename decltype(scalar)::type, typename decltype(flavour)::type>(path, checkpoint);
  });
  if (!known)
    throw std::invalid_argument("adamx.checkpoint.save: no optimizer '" + name + "' over '" + dtype + "'");
}

}  // namespace

void bind_checkpoint(py::module_& m) {
  m.def("load_checkpoint_file", &load_file, py::arg("path"),
        "Reads the checkpoint file `path` into a dict (adamx.checkpoint.load).");
  m.def("save_checkpoint_file", &save_file, py::arg("path"), py::arg("checkpoint"),
        "Writes the checkpoint dict to the file `path`, atomically (adamx.checkpoint.save).");
}

}  // namespace adamx_python
