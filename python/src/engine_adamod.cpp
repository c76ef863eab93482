// The engines of AdaMod (engine.hpp).
#include "engine.hpp"

namespace adamx_python {
std::unique_ptr<Engine> make_engine_AdaMod(const std::string& dtype) { return make_for_dtype<adamx::flavour::AdaMod>(dtype); }
}  // namespace adamx_python
