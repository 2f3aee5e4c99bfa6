// Simulator: a discrete-event simulation of a computing power network in
// virtual time, driving the very same scheduler code as the server.
//
// Events are job arrivals, scheduling rounds and completions. Each round hands
// every pending job and the running jobs' expected ends to BatchScheduler
// (through MakeBatchInput, as Platform::Tick does); a placed job holds its
// cards from placement, stages its dataset for the estimated transfer time,
// then runs for its *actual* duration: the workload's duration, observed on
// its reference card, scaled to the chosen pool's card — so it may differ
// from what the scheduler estimated by as much as the trace differs from the
// reference estimate. Rounds run at every event time (as an
// event-driven server would) or every `round_s` of virtual time.
// Deterministic: the same inputs give the same report, byte for byte.
// Not yet modelled: site outages, links shared between concurrent transfers,
// time-varying prices and carbon (the later parts).
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

struct SimOptions {
  std::optional<Policy> policy;  // overrides every job's policy when set
  Baseline baseline = Baseline::kNone;
  double round_s = 0;  // 0: a round at every event time
  sched::BatchOptions batch;
  bool record_waits = false;  // fill SimReport::wait_s_by_job
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
  // Busy card-hours / available card-hours over the makespan, per area.
  std::vector<std::pair<std::string, double>> utilisation_by_area;
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
