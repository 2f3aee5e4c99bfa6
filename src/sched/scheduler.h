// The scheduler: choose where one job runs, and say why.
//
// A pure library (no I/O, threads or clock): given a job, the catalog, the
// network's sites/pools/links and each pool's current load, Decide() filters
// every pool (accelerator, memory, software stack, residency, total capacity,
// site availability, deadline, budget), estimates run time, staging time and
// cost, compute cost, energy and carbon on each survivor, ranks them by the
// job's policy and returns a Decision whose outcome is a type: placed on the
// best pool with free cards, queued (fits somewhere, nothing free now), or
// infeasible (fits nowhere, with the reasons). Every rejected pool is listed
// with its reason. Identical input gives identical output: ties break on the
// pool id. The server, `cpn quote` and the simulator all call this code.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "src/core/catalog.h"
#include "src/core/job_spec.h"
#include "src/core/topology.h"

namespace cpn::sched {

struct PoolLoad {
  int64_t free_cards = 0;
  bool available = true;  // site up, not draining
};

struct SchedulerInput {
  const Catalog* catalog = nullptr;
  const Topology* topology = nullptr;
  // By pool id. A pool absent from the map is taken as fully free and available.
  const std::map<std::string, PoolLoad>* loads = nullptr;
};

// The modelled outcome of running a job on one pool.
struct Option {
  std::string site_id, pool_id, accelerator;
  int64_t cards = 0;
  double run_h = 0;
  double transfer_h = 0;
  double completion_h = 0;  // transfer + run
  double compute_cny = 0;
  double transfer_cny = 0;
  double total_cny = 0;
  double energy_kwh = 0;
  double electricity_cny = 0;  // part of the provider's price; shown for insight
  double carbon_kg = 0;
  double price_cny_per_card_hour = 0;
  double score = 0;  // the policy's objective; lower is better
  int64_t free_cards = 0;
};

enum class RejectReason {
  kAccelerator,
  kMemory,
  kSoftware,
  kResidency,
  kCapacity,
  kSiteUnavailable,
  kDeadline,
  kBudget,
  kBusy,
};
std::string_view RejectReasonName(RejectReason r);

struct Rejection {
  std::string pool_id;
  RejectReason reason;
  std::string detail;
};

enum class Outcome { kPlaced, kQueued, kInfeasible };
std::string_view OutcomeName(Outcome o);

struct Decision {
  Outcome outcome = Outcome::kInfeasible;
  // Pools with free capacity that pass every filter, best first.
  std::vector<Option> ranked;
  std::vector<Rejection> rejected;  // in pool-id order
  std::string summary;              // one sentence for people
  // The same job on its home site (cheapest fitting pool there, ignoring load).
  std::optional<Option> home;
  std::string home_note;

  const Option* chosen() const {
    return outcome == Outcome::kPlaced && !ranked.empty() ? &ranked.front() : nullptr;
  }
};

Decision Decide(const JobSpec& job, const SchedulerInput& in);

// The estimate for `job` on `pool` at `site` (no filtering).
Option Estimate(const JobSpec& job, const Site& site, const Pool& pool,
                const AcceleratorModel& model, const Topology& topology);

// What it would cost the tenant to buy and run its own servers for the job.
struct OwnershipCost {
  int64_t servers = 0;
  double capex_cny = 0;
  double energy_cny = 0;
  double total_cny = 0;
};
OwnershipCost EstimateOwnership(const JobSpec& job, const AcceleratorModel& model, double run_h,
                                const Site& home_site);

}  // namespace cpn::sched
