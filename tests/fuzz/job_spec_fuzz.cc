// Fuzzes job specs as the API and `cpn quote --offline` read them: any bytes
// are parsed as JSON (depth-limited) and validated against the shipped
// catalog. A spec that is accepted must survive a round trip: written back
// out and read again, it is accepted and writes out the same.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "src/core/catalog.h"
#include "src/core/job_spec.h"
#include "src/core/json_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const cpn::Catalog* catalog =
      new cpn::Catalog(std::move(cpn::Catalog::LoadDefault()).value());
  auto doc = cpn::ParseJson(std::string(reinterpret_cast<const char*>(data), size), "job");
  if (!doc.ok()) return 0;
  auto spec = cpn::JobSpecFromJson(*doc, *catalog);
  if (!spec.ok()) {
    if (spec.status().message().empty()) std::abort();  // every refusal says why
    return 0;
  }
  cpn::Json out = cpn::JobSpecToJson(*spec);
  auto again = cpn::JobSpecFromJson(out, *catalog);
  if (!again.ok()) std::abort();
  if (cpn::JobSpecToJson(*again) != out) std::abort();
  return 0;
}
