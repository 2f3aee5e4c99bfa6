// Fuzzes the JSON readers of the national model: a topology (sites, pools,
// links, diurnal curves) checked against the shipped catalog, and a catalog
// itself. Input is the file's bytes; a refusal must say why.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "src/core/catalog.h"
#include "src/core/json_reader.h"
#include "src/core/topology.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const cpn::Catalog* catalog =
      new cpn::Catalog(std::move(cpn::Catalog::LoadDefault()).value());
  auto doc = cpn::ParseJson(std::string(reinterpret_cast<const char*>(data), size), "fuzz.json");
  if (!doc.ok()) return 0;
  auto topology = cpn::Topology::FromJson(*doc, "fuzz.json", *catalog);
  if (!topology.ok() && topology.status().message().empty()) std::abort();
  auto other = cpn::Catalog::FromJson(*doc, "fuzz.json");
  if (!other.ok() && other.status().message().empty()) std::abort();
  return 0;
}
