// The engines of RAdam (engine.hpp).
#include "engine.hpp"

namespace adamx_python {
std::unique_ptr<Engine> make_engine_RAdam(const std::string& dtype) { return make_for_dtype<adamx::flavour::RAdam>(dtype); }
}  // namespace adamx_python
