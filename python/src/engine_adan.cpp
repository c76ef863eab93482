// The engines of Adan (engine.hpp).
#include "engine.hpp"

namespace adamx_python {
std::unique_ptr<Engine> make_engine_Adan(const std::string& dtype) { return make_for_dtype<adamx::flavour::Adan>(dtype); }
}  // namespace adamx_python
