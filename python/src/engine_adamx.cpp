// The engines of AdamX (engine.hpp).
#include "engine.hpp"

namespace adamx_python {
std::unique_ptr<Engine> make_engine_AdamX(const std::string& dtype) { return make_for_dtype<adamx::flavour::AdamX>(dtype); }
}  // namespace adamx_python
