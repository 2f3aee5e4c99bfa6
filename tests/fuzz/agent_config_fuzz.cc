// Fuzzes the agent's TOML config reader (the TOML subset, then the site,
// pools and transfer settings) against the shipped catalog.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "src/agent/agent_config.h"
#include "src/core/catalog.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const cpn::Catalog* catalog =
      new cpn::Catalog(std::move(cpn::Catalog::LoadDefault()).value());
  auto config = cpn::ParseAgentConfig(std::string(reinterpret_cast<const char*>(data), size),
                                      "fuzz.toml", *catalog);
  if (!config.ok() && config.status().message().empty()) std::abort();
  return 0;
}
