// BatchScheduler: one scheduling round for the whole network.
//
// Each round takes every pending job and every pool and returns a
// PlacementPlan. It is the scale counterpart of Decide(): same filters and
// estimates, but over flat, interned arrays (indices, not strings or
// pointers), with working buffers reused from round to round, so a round over
// 100,000 jobs and 1,000 pools allocates almost nothing and runs in well under
// a second on one core.
//
// Objective. For job j on pool p let r_jp be the job's policy metric (cost,
// completion time, carbon, or the balanced score) divided by the best value
// over all pools that fit it, ignoring load; r >= 1. Options with r above
// `max_relative_cost` are not taken (the job waits instead). The plan
// minimises sum of r_jp over placed jobs plus `unplaced_penalty` for every job
// left waiting, under pool capacities and whole gangs in one pool.
// LpLowerBound (lp_bound.h) solves the LP relaxation of exactly this problem.
//
// Method: each job keeps its K best candidate pools; jobs are taken in order
// of priority, then weighted fair share between tenants (lowest FP16
// PFLOPS-hours per unit of weight first, counting what this round already
// gave them), then regret (how much the job loses if its best pool fills);
// each takes its best candidate with room, falling back to a full scan.
// A blocked job may preempt running preemptible jobs of lower priority, or
// gets a reservation on the pool that frees enough cards first; later jobs
// may use a reserved pool only if they end before the reservation starts or
// fit in the cards the reservation leaves spare (EASY backfill), so a large
// gang is never starved by a stream of small jobs.
//
// Deterministic: the same input gives the same plan, bit for bit (ties break
// on indices). Not thread-safe; one scheduler per thread.
#pragma once

#include <cstdint>
#include <limits>
#include <vector>

#include "src/core/catalog.h"
#include "src/core/job_spec.h"

namespace cpn::sched {

inline constexpr float kNoLimit = std::numeric_limits<float>::infinity();

struct BatchModel {
  float fp16_tflops = 0;
  float memory_gb = 0;
  float board_kw = 0;
  uint32_t software_mask = 0;                // bit i: the i-th interned software name
  float efficiency[3] = {0.4f, 0.3f, 0.5f};  // by JobClass
};

struct BatchSite {
  uint16_t area = 0;
  uint16_t province = 0;  // interned jurisdiction
  uint16_t country = 0;
  float pue = 1.3f;
  float carbon_kg_per_kwh = 0.5f;  // grid intensity x (1 - green share)
};

struct BatchPool {
  uint32_t site = 0;
  uint16_t model = 0;
  int32_t cards = 0;
  int32_t free_cards = 0;
  float price_cny_per_card_hour = 0;
  bool available = true;
};

struct BatchLink {
  float cny_per_gb = 0;
  float hours_per_gb = 0;  // 8 / (bandwidth_gbps x 3600)
  float setup_h = 0;       // round trips to set up a transfer
};

struct BatchJob {
  uint16_t tenant = 0;
  int16_t priority = 0;
  JobClass job_class = JobClass::kTraining;
  Policy policy = Policy::kBalanced;
  Residency residency = Residency::kAnywhere;
  bool preemptible = false;
  int32_t cards = 1;
  int32_t model = -1;  // -1: any model that meets memory and software
  float min_memory_gb = 0;
  uint32_t software_mask = 0;
  float work_fp16_eflop = 1;
  float dataset_gb = 0;
  uint32_t data_site = 0;
  // Sites already holding a copy of the dataset: replica_sites[begin, end).
  uint32_t replicas_begin = 0, replicas_end = 0;
  float deadline_h = kNoLimit;
  float budget_cny = kNoLimit;
  float waited_h = 0;
};

struct RunningJob {
  uint64_t id = 0;
  uint32_t pool = 0;
  int32_t cards = 0;
  float ends_in_h = 0;
  int16_t priority = 0;
  bool preemptible = false;
  uint16_t tenant = 0;
};

struct BatchInput {
  std::vector<BatchModel> models;
  std::vector<BatchSite> sites;
  std::vector<BatchPool> pools;
  uint16_t areas = 1;
  std::vector<BatchLink> links;  // areas x areas, row-major
  std::vector<BatchJob> jobs;
  std::vector<uint32_t> replica_sites;
  std::vector<RunningJob> running;
  // Fair share: per tenant weight and FP16 PFLOPS-hours used in the window.
  std::vector<float> tenant_weight;
  std::vector<float> tenant_usage;

  const BatchLink& Link(uint16_t a, uint16_t b) const { return links[size_t{a} * areas + b]; }
};

struct BatchOptions {
  int candidates = 8;
  // How many of a job's best pools to look through when its kept candidates
  // are full (0: all of them).
  int fallback_depth = 32;
  // Rounds of pool pricing (Lagrangian subgradient steps on pool capacity)
  // before the assignment; 0 turns pricing off (plain regret order).
  int price_iterations = 30;
  float price_step = 0.01f;  // first step, per card; then step / round
  float max_relative_cost = 3.0f;
  // A job that has waited accepts worse pools: its limit grows by this much
  // per hour waited, up to max_relative_cost_aged, so a job whose good pools
  // stay full runs elsewhere rather than waiting without end.
  float relax_per_waited_h = 1.0f;
  float max_relative_cost_aged = 10.0f;
  float unplaced_penalty = 4.0f;
  int max_reservations = 64;
  // Jobs that have waited this long are placed oldest first, before the
  // round's other jobs, and reserve capacity if none is free.
  float reserve_after_h = 1.0f;
  bool backfill = true;
  bool preemption = true;
};

enum class JobOutcome : uint8_t {
  kPlaced,
  kPlacedByPreemption,  // placed once the plan's preemptions are carried out
  kReserved,            // waiting, with a reservation
  kWaiting,             // fits, but no pool has room now
  kInfeasible,          // no pool fits at all
};

struct JobPlacement {
  int32_t pool = -1;        // chosen pool, or the reserved one
  int32_t runner_up = -1;   // the next candidate, for explanations
  float relative_cost = 0;  // r of the chosen pool
  float metric = 0;         // the policy metric there (CNY, hours, kg)
  float start_in_h = 0;     // for reservations
  JobOutcome outcome = JobOutcome::kInfeasible;
};

struct PlacementPlan {
  std::vector<JobPlacement> jobs;  // by input job index
  std::vector<uint64_t> preempt;   // running job ids to stop and requeue
  double objective = 0;
  int64_t placed = 0;
  int64_t reserved = 0;
  int64_t infeasible = 0;
};

class BatchScheduler {
 public:
  explicit BatchScheduler(BatchOptions options = {}) : options_(options) {}

  const PlacementPlan& Schedule(const BatchInput& in);
  // Bytes of the scheduler's working buffers after the last round.
  size_t WorkingSetBytes() const;

  struct Candidate {
    uint32_t pool;
    float r;
    float metric;
    float run_h;
  };
  // The relative-cost limit for a job, given how long it has waited.
  static float RelativeCostLimit(const BatchOptions& o, const BatchJob& job);
  // Every pool that fits job `j` (ignoring load) with r <= its limit,
  // best first. Used by the LP bound and tests; allocates.
  static std::vector<Candidate> FeasiblePools(const BatchInput& in, const BatchOptions& o,
                                              size_t j);

 private:
  struct Eval {
    uint32_t pool;
    float cost, time_h, carbon_kg, run_h;
  };
  // Per-round, per-pool facts laid out for the evaluation loop.
  struct PoolTable {
    std::vector<uint16_t> model, area, province, country;
    std::vector<uint32_t> site;
    std::vector<int32_t> cards;
    std::vector<uint8_t> available;
    // Per job class: card-hours per FP16 EFLOP, CNY per EFLOP, kg CO2 per EFLOP.
    std::vector<float> card_h_per_eflop[3], cny_per_eflop[3], kg_per_eflop[3];
    // Per job class and policy (cheapest, fastest, greenest): pools in
    // ascending order of the per-EFLOP term that bounds the policy's metric
    // from below, for early termination of the evaluation.
    std::vector<uint32_t> order[3][3];
    // The same orders restricted to each model:
    // by_model[c][k][model_begin[m] .. model_begin[m + 1]).
    std::vector<uint32_t> by_model[3][3];
    std::vector<uint32_t> model_begin;
    void Build(const BatchInput& in);
  };
  // Every pool that fits job j. With `keep` > 0 it may stop early, once no
  // remaining pool can be among the `keep` best by the job's policy.
  static void Evaluate(const BatchInput& in, const PoolTable& t, size_t j, size_t keep,
                       float max_relative_cost, std::vector<Eval>* out);
  // Turns evaluations into candidates with r <= max_relative_cost, best first.
  // With `keep` > 0 only the `keep` best are sorted into place.
  static void Rank(const BatchJob& job, const BatchOptions& o, std::vector<Eval>& evals,
                   size_t keep, std::vector<Candidate>* out);
  // Whether the job may start on `pool` now: room, and the pool's reservation
  // (if any) is not delayed. Take() then claims any spare cards it used.
  bool Allowed(uint32_t pool, const BatchJob& job, float time_h) const;
  void Take(uint32_t pool, const BatchJob& job, float time_h);
  float StartTime(uint32_t pool, int32_t cards, int32_t* spare);
  void IndexReleases();
  void Place(size_t j, const Candidate& c, const BatchJob& job, JobOutcome outcome);

  BatchOptions options_;
  PlacementPlan plan_;
  std::vector<Eval> evals_;
  std::vector<Candidate> ranked_;
  struct Release {
    uint32_t pool;
    float end_h;
    int32_t cards;
  };
  std::vector<Release> releases_;  // running jobs and this round's placements
  // Running jobs' releases by pool, soonest first (CSR into releases_), built
  // on the round's first reservation; this round's placements come after.
  bool releases_indexed_ = false;
  size_t running_releases_ = 0;
  std::vector<uint32_t> release_begin_, release_order_;
  std::vector<std::pair<float, int32_t>> ends_;
  std::vector<uint8_t> preempted_;
  PoolTable table_;
  std::vector<float> price_;  // per pool, per card: the capacity's shadow price
  std::vector<int64_t> load_;
  std::vector<int32_t> where_;                         // per job: placed pool or -1
  std::vector<uint32_t> pool_jobs_, pool_jobs_begin_;  // placed jobs by pool (CSR)
  // Per job: K candidates (flat), their count, regret, order.
  std::vector<Candidate> cand_;
  std::vector<uint8_t> ncand_;
  std::vector<float> regret_;
  std::vector<uint32_t> order_;
  std::vector<int32_t> free_;
  // Per pool reservation state.
  std::vector<float> res_start_;
  std::vector<int32_t> res_spare_;
  std::vector<float> tenant_given_;
};

}  // namespace cpn::sched
