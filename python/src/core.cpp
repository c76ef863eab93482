// adamx._core: the C++ library behind the Python package. Its one class,
// Engine (engine.hpp), holds an adamx::Optimizer of one optimizer and one
// parameter type, chosen by name at run time; the Python modules
// (adamx.torch, adamx.numpy) check every tensor and hand it the addresses of
// memory they keep alive for the call. Nothing is copied on a step: the fused
// kernel reads and writes the caller's memory in place, with the GIL
// released.
//
// Like the libtorch adapter, every parameter counts its own steps (torch's
// per-parameter "step"), and a step updates the parameters that have a
// gradient (adamx's step of a subset, step_subset.hpp).
#include "checkpoint_file.hpp"
#include "engine.hpp"

namespace adamx_python {
namespace {

std::unique_ptr<Engine> make_engine(const std::string& name, const std::string& dtype) {
#define ADAMX_PY_ENGINE(Name) \
  if (name == #Name) return make_engine_##Name(dtype);
  ADAMX_FOR_EACH_OPTIMIZER(ADAMX_PY_ENGINE)
#undef ADAMX_PY_ENGINE
  throw std::invalid_argument("adamx: no optimizer named '" + name + "'");
}

std::vector<std::string> optimizer_names() {
  std::vector<std::string> out;
#define ADAMX_PY_NAME(Name) out.emplace_back(#Name);
  ADAMX_FOR_EACH_OPTIMIZER(ADAMX_PY_NAME)
#undef ADAMX_PY_NAME
  return out;
}

}  // namespace
}  // namespace adamx_python

using namespace adamx_python;

PYBIND11_MODULE(_core, m) {
  m.doc() = "The adamx C++ library, bound for the adamx Python package (use adamx.torch or adamx.numpy).";

  auto non_finite = py::register_exception<adamx::NonFiniteGradientError>(m, "NonFiniteGradientError", PyExc_ValueError);
  (void)non_finite;
  py::register_exception<adamx::CheckpointError>(m, "CheckpointError", PyExc_ValueError);

  m.def("optimizer_names", &optimizer_names, "The optimizers of the library, by name.");
  m.def("version", [] {
    return std::to_string(ADAMX_VERSION_MAJOR) + "." + std::to_string(ADAMX_VERSION_MINOR) + "." +
           std::to_string(ADAMX_VERSION_PATCH);
  });
  m.def("instruction_set", [] { return std::string(adamx::instruction_set_name(adamx::instruction_set())); },
        "The instruction set the element passes run with.");

  py::class_<Engine>(m, "Engine")
      .def(py::init(&make_engine), py::arg("name"), py::arg("dtype"))
      .def_property_readonly("name", &Engine::name)
      .def_property_readonly("dtype", &Engine::dtype)
      .def("default_options", &Engine::default_options)
      .def("checked_options", &Engine::checked_options, py::arg("options"), py::arg("group") = std::string())
      .def_property_readonly("slot_names", &Engine::slot_names)
      .def_property_readonly("scalar_names", &Engine::scalar_names)
      .def_property_readonly("steps_matrices", &Engine::steps_matrices)
      .def_property_readonly("has_evaluation_point", &Engine::has_evaluation_point)
      .def("tensor_problem", &Engine::tensor_problem)
      .def("add_group", &Engine::add_group, py::arg("shapes"), py::arg("options"))
      .def_property_readonly("num_groups", &Engine::num_groups)
      .def("shapes", &Engine::shapes)
      .def("options", &Engine::options)
      .def("set_options", &Engine::set_options)
      .def("set_threads", &Engine::set_threads)
      .def("step", &Engine::step)
      .def("eval", &Engine::eval)
      .def("train", &Engine::train)
      .def_property_readonly("in_eval_mode", &Engine::in_eval_mode)
      .def("step_count", &Engine::step_count)
      .def("parameter_steps", &Engine::parameter_steps)
      .def("scalars", &Engine::scalars)
      .def("tensor_state", &Engine::tensor_state)
      .def("restore", &Engine::restore)
      .def("save", &Engine::save)
      .def("load", &Engine::load);

  bind_checkpoint(m);
}
