// Simulator: a discrete-event simulation of a computing power network in
// virtual time, driving the very same scheduler code as the server.
//
// Events are job arrivals, scheduling rounds, transfer and run completions,
// and site outages and recoveries. Each round hands every pending job and the
// running jobs' expected ends to BatchScheduler, in the same interned form
// MakeBatchInput gives the server (built once; a round only refreshes free
// cards, waits, and the hour's prices and carbon). A placed job holds its
// cards from placement, stages its dataset over the link between its data's
// area and the pool's (a link's bandwidth is shared equally by the transfers
// on it at each moment), then runs for its *actual* duration: the workload's
// duration, observed on its reference card, scaled to the chosen pool's card
// — so it may differ from what the scheduler estimated. An outage takes a
// site's pools away; the jobs staging or running there are stopped and
// queued again (their work so far is lost but still metered). Electricity
// price and carbon intensity follow the topology's diurnal curves: rounds see
// the current hour's figures, metering integrates the curve over each run.
// Rounds run at every event time (as an event-driven server would) or every
// `round_s` of virtual time. Deterministic: the same inputs give the same
// report, byte for byte.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "src/core/catalog.h"
#include "src/core/job_spec.h"
#include "src/core/topology.h"
#include "src/sched/batch.h"
#include "src/sim/workload.h"

namespace cpn::sim {

// Baselines beside cpn's own batch rounds, one job at a time in arrival order:
// kLocal runs every job in its data's home area (cheapest pool there),
// kRoundRobin deals jobs to fitting pools in turn, kGreedyCheapest takes
// each job's cheapest fitting pool with room.
enum class Baseline { kNone, kLocal, kRoundRobin, kGreedyCheapest };
std::string_view BaselineName(Baseline b);
// Parses a policy or baseline name as `cpn sim --policy` takes it.
Result<std::pair<std::optional<Policy>, Baseline>> ParseSimPolicy(std::string_view name);

// A site out of service from start_s for duration_s (virtual seconds).
struct Outage {
  std::string site_id;
  double start_s = 0;
  double duration_s = 0;
};
// Parses "SITE_ID,START_H,HOURS" as `cpn sim --outage` takes it.
Result<Outage> ParseOutage(std::string_view text, const Topology& topology);

struct SimOptions {
  std::optional<Policy> policy;  // overrides every job's policy when set
  Baseline baseline = Baseline::kNone;
  double round_s = 0;  // 0: a round at every event time
  sched::BatchOptions batch;
  bool record_waits = false;  // fill SimReport::wait_s_by_job
  std::vector<Outage> outages;
  double utilisation_bucket_s = 3600;  // resolution of utilisation over time
  // Called now and then with the share of jobs finished (0..1), for progress.
  std::function<void(double)> progress;
};

struct SimReport {
  std::string policy;
  int64_t jobs = 0, done = 0, never_placed = 0;
  double mean_wait_s = 0, p50_wait_s = 0, p99_wait_s = 0;
  double mean_completion_s = 0, p50_completion_s = 0, p99_completion_s = 0;
  double cost_cny = 0, energy_kwh = 0, carbon_t = 0, data_moved_tb = 0;
  int64_t residency_violations = 0;
  double makespan_s = 0;
  double mean_staging_s = 0;  // over jobs that moved data, link sharing included
  int64_t interrupted = 0;    // runs stopped by outages and queued again
  double lost_card_h = 0;     // card-hours of those runs' lost work
  // Trace accelerators not in the catalog, mapped by FP16 capacity: name,
  // TFLOPS per card assumed, jobs.
  struct Mapped {
    std::string name;
    double fp16_tflops = 0;
    int64_t jobs = 0;
  };
  std::vector<Mapped> mapped_accelerators;
  // Held card-hours / available card-hours over the makespan, per area.
  std::vector<std::pair<std::string, double>> utilisation_by_area;
  // The same per time bucket: utilisation_over_time[area index][bucket].
  double utilisation_bucket_s = 3600;
  std::vector<std::vector<double>> utilisation_over_time;
  int64_t events = 0, rounds = 0;
  // Per job in workload order (-1 if never started), when record_waits is set.
  std::vector<double> wait_s_by_job;

  std::string ToText() const;
  std::string ToJson() const;
};

SimReport Simulate(const Catalog& catalog, const Topology& topology,
                   const std::vector<WorkloadJob>& jobs, const SimOptions& options);

// Erlang C: the mean wait in an M/M/c queue with arrival rate lambda and
// service rate mu per server (same time unit).
double ErlangCMeanWait(int servers, double lambda, double mu);

}  // namespace cpn::sim
