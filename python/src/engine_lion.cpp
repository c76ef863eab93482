// The engines of Lion (engine.hpp).
#include "engine.hpp"

namespace adamx_python {
std::unique_ptr<Engine> make_engine_Lion(const std::string& dtype) { return make_for_dtype<adamx::flavour::Lion>(dtype); }
}  // namespace adamx_python
