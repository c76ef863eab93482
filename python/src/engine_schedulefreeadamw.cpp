// The engines of ScheduleFreeAdamW (engine.hpp).
#include "engine.hpp"

namespace adamx_python {
std::unique_ptr<Engine> make_engine_ScheduleFreeAdamW(const std::string& dtype) { return make_for_dtype<adamx::flavour::ScheduleFreeAdamW>(dtype); }
}  // namespace adamx_python
