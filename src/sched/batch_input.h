// Building a BatchInput from cpn's model (catalog, topology, job specs).
//
// The batch scheduler works on interned indices; the server and the
// simulator hold strings and specs. This adapter interns areas, provinces,
// countries and software names, lays out the link matrix, and keeps the
// pool and site ids so that a plan's indices can be turned back into ids.
// Pure; allocates the input it returns.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "src/core/catalog.h"
#include "src/core/job_spec.h"
#include "src/core/topology.h"
#include "src/sched/batch.h"
#include "src/sched/scheduler.h"

namespace cpn::sched {

struct PendingJob {
  const JobSpec* spec = nullptr;
  double waited_h = 0;
  bool preemptible = false;
};

struct RunningJobInfo {
  uint64_t id = 0;
  std::string pool_id;
  int64_t cards = 0;
  double ends_in_h = 0;
  int64_t priority = 0;
  bool preemptible = false;
  std::string tenant;
};

struct BatchView {
  BatchInput input;
  std::vector<std::string> pool_ids;  // by pool index
  std::vector<std::string> tenants;   // by tenant index
};

BatchView MakeBatchInput(const Catalog& catalog, const Topology& topology,
                         const std::map<std::string, PoolLoad>& loads,
                         const std::vector<PendingJob>& jobs,
                         const std::vector<RunningJobInfo>& running);

}  // namespace cpn::sched
