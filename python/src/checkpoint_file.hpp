// adamx.checkpoint's C++ half (checkpoint_file.cpp): the library's checkpoint
// files read into and written from Python dicts of NumPy arrays.
#pragma once

#include <pybind11/pybind11.h>

namespace adamx_python {

/// Adds load_checkpoint_file(path) and save_checkpoint_file(path, dict) to
/// the module (adamx._core); adamx/checkpoint.py is their public face.
void bind_checkpoint(pybind11::module_& m);

}  // namespace adamx_python
