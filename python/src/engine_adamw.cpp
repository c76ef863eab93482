// The engines of AdamW (engine.hpp).
#include "engine.hpp"

namespace adamx_python {
std::unique_ptr<Engine> make_engine_AdamW(const std::string& dtype) { return make_for_dtype<adamx::flavour::AdamW>(dtype); }
}  // namespace adamx_python
