// Generated batch-scheduling instances for tests and `bench/run sched`:
// `sites` sites in `areas` areas of one country (a few provinces each), pools
// of six accelerator types with realistic peaks and prices, and `jobs` jobs
// with gangs of 1-64 cards, a mix of policies, explicit models and abstract
// requests, residency rules and deadlines. Deterministic for a seed.
#pragma once

#include <cstdint>

#include "src/sched/batch.h"

namespace cpn::testing {

struct InstanceShape {
  int64_t jobs = 2000;
  int64_t sites = 50;
  int64_t pools_per_site = 3;  // drawn from the six models
  int areas = 10;
  // Free cards across the network over cards the jobs ask for.
  double capacity_over_demand = 1.3;
  int tenants = 4;
  uint64_t seed = 1;
};

sched::BatchInput MakeInstance(const InstanceShape& shape);

}  // namespace cpn::testing
