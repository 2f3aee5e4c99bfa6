// Fuzzes the workload and trace readers of `cpn sim`: the first byte picks
// the reader (cpn's workload CSV, the Alibaba GPU pod list, the Azure LLM
// inference trace), the rest is the file's text. A refusal must name where.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "src/core/catalog.h"
#include "src/sim/convert.h"
#include "src/sim/workload.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const cpn::Catalog* catalog =
      new cpn::Catalog(std::move(cpn::Catalog::LoadDefault()).value());
  if (size == 0) return 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  cpn::Status status;
  cpn::sim::ConvertOptions options;
  cpn::sim::ConvertSummary summary;
  switch (data[0] % 3) {
    case 0:
      status = cpn::sim::ParseWorkloadCsv(text, "fuzz.csv", *catalog).status();
      break;
    case 1:
      status =
          cpn::sim::ConvertAlibabaGpuPods(text, "pods.csv", "", "", options, &summary).status();
      break;
    default:
      status = cpn::sim::ConvertAzureLlmInference(text, "azure.csv", options, &summary).status();
      break;
  }
  if (!status.ok() && status.message().empty()) std::abort();
  return 0;
}
