// The engines of Adam (engine.hpp).
#include "engine.hpp"

namespace adamx_python {
std::unique_ptr<Engine> make_engine_Adam(const std::string& dtype) { return make_for_dtype<adamx::flavour::Adam>(dtype); }
}  // namespace adamx_python
