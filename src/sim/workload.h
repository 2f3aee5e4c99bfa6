// Workloads for `cpn sim`: the documented CSV format (docs/workload-format.md),
// its reader (which names the offending line and column), a writer, and a
// synthetic generator. One row is one job: when it arrives, who submits it,
// what it asks for, how long it really runs, and where its data lives.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "src/core/catalog.h"
#include "src/core/job_spec.h"
#include "src/core/status.h"

namespace cpn::sim {

struct WorkloadJob {
  double arrival_s = 0;
  JobSpec spec;           // resources, work, dataset, residency, deadline, policy
  double duration_s = 0;  // how long it really runs once started (may differ from the estimate)
  // Set when the trace named a card the catalog lacks: its name and FP16
  // TFLOPS per card. The job then runs on any card with its FP16 work, and
  // its duration is scaled from that card's capacity.
  std::string mapped_from;
  double ref_fp16_tflops = 0;
};

// Header line of the CSV format, in column order. Files with the first eleven
// columns only (no accelerator_fp16_tflops) are read too.
extern const char* const kWorkloadHeader;

// CSV helpers shared with the trace converters: cells of one line (no
// quoting: none of the formats use it), and a number in [min, max] whose
// error names `where` ("trace.csv:12: cards").
std::vector<std::string> SplitCsvLine(const std::string& line);
Result<double> CsvNumber(const std::string& s, const std::string& where, double min, double max);

// Parses CSV text; `what` names the source in messages ("trace.csv:12: ...").
Result<std::vector<WorkloadJob>> ParseWorkloadCsv(const std::string& text, const std::string& what,
                                                  const Catalog& catalog);
Result<std::vector<WorkloadJob>> LoadWorkloadCsv(const std::string& path, const Catalog& catalog);
std::string WorkloadToCsv(const std::vector<WorkloadJob>& jobs);

struct SyntheticOptions {
  int64_t jobs = 1000;
  double arrivals_per_hour = 10;
  std::vector<std::string> data_sites;  // dataset home sites, picked uniformly
  std::vector<std::string> tenants = {"tenant-a", "tenant-b", "tenant-c"};
  double training_share = 0.6;   // the rest split between inference and batch
  double max_dataset_gb = 1000;  // dataset sizes are uniform in [0, max)
  uint64_t seed = 1;
};
// Poisson arrivals; gangs of 1-32 cards; log-uniform work; run time drawn
// around the work's estimate on an A800-class card.
std::vector<WorkloadJob> SyntheticWorkload(const SyntheticOptions& o);

}  // namespace cpn::sim
