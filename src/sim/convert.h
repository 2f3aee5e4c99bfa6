// Converters from public workload traces to cpn's workload CSV
// (docs/workload-format.md), for `cpn sim convert`.
//
// Each reader checks the trace's header and every field it uses, and names
// the offending line on bad input ("pods.csv:12: num_gpu: ..."). Traces say
// nothing of where the data lives, so data homes are dealt to the given sites
// in turn; cards the catalog lacks are named with their FP16 capacity so the
// simulator maps them by capacity and says so in its report.
#pragma once

#include <string>
#include <vector>

#include "src/core/status.h"
#include "src/sim/workload.h"

namespace cpn::sim {

struct ConvertOptions {
  std::vector<std::string> data_sites = {"cpn:cn.bj/bj-cloud/bj-01", "cpn:cn.sh/sh-cloud/sh-01",
                                         "cpn:cn.gd/sz-cloud/sz-01"};
  double dataset_gb = 0;
  Residency residency = Residency::kAnywhere;
  // Azure LLM inference: parameters of the served model, cards per request,
  // and the FP16 TFLOPS of the card the request runs on in the trace.
  double model_params_b = 70;
  int64_t cards = 1;
  double ref_fp16_tflops = 312;
};

struct ConvertSummary {
  int64_t rows = 0, jobs = 0;
  std::vector<std::string> notes;  // what was skipped or assumed, for people
};

// Alibaba cluster-trace-gpu-v2023 pod list (openb_pod_list_*.csv). `nodes`
// (openb_node_list_gpu_node.csv text, may be empty) sets the reference card
// of pods without a GPU type: the cluster's GPU-weighted mean capacity.
Result<std::vector<WorkloadJob>> ConvertAlibabaGpuPods(
    const std::string& pods, const std::string& what, const std::string& nodes,
    const std::string& nodes_what, const ConvertOptions& o, ConvertSummary* summary);

// Azure LLM inference trace 2023 (TIMESTAMP, ContextTokens, GeneratedTokens).
Result<std::vector<WorkloadJob>> ConvertAzureLlmInference(const std::string& text,
                                                          const std::string& what,
                                                          const ConvertOptions& o,
                                                          ConvertSummary* summary);

}  // namespace cpn::sim
