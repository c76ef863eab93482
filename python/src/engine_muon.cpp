// The engines of Muon (engine.hpp).
#include "engine.hpp"

namespace adamx_python {
std::unique_ptr<Engine> make_engine_Muon(const std::string& dtype) { return make_for_dtype<adamx::flavour::Muon>(dtype); }
}  // namespace adamx_python
