// The engines of AdaBound (engine.hpp).
#include "engine.hpp"

namespace adamx_python {
std::unique_ptr<Engine> make_engine_AdaBound(const std::string& dtype) { return make_for_dtype<adamx::flavour::AdaBound>(dtype); }
}  // namespace adamx_python
