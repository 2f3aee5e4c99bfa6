// bench/run sched: quality and speed of a batch scheduling round.
//
// Quality: generated instances of 2,000 jobs x 50 sites x 6 accelerator types;
// the plan's objective against the LP-relaxation lower bound (GLPK) of the same
// instance in the same run, and on small instances against the exact integer
// optimum. Speed: one round from 1,000 to 100,000 jobs over 1,000 pools, with
// working-set bytes per job. Prints tables, then one line of JSON.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "src/sched/batch.h"
#include "src/sched/lp_bound.h"
#include "src/testing/batch_instances.h"

using cpn::sched::BatchOptions;
using cpn::sched::BatchScheduler;
using cpn::testing::InstanceShape;
using cpn::testing::MakeInstance;

namespace {

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  bool quick = argc > 1 && std::string(argv[1]) == "--quick";
  BatchOptions options;
  std::string json = "{\"bench\":\"sched\",\"quality\":[";

  std::printf(
      "Quality: plan objective vs LP lower bound (same instance, same run)\n"
      "load = cards asked / free cards; published data-centre load is 20-30%%\n");
  std::printf("%5s %6s %6s %6s %6s %12s %12s %8s %10s %10s %8s\n", "load", "seed", "jobs", "sites",
              "pools", "plan", "LP bound", "ratio", "plan ms", "LP ms", "speedup");
  double worst = 0;
  bool first_quality = true;
  for (double over : {3.0, 2.0, 1.3})
    for (uint64_t seed = 1; seed <= (quick ? 1 : 3); ++seed) {
      InstanceShape shape;
      shape.jobs = 2000;
      shape.sites = 50;
      shape.seed = seed;
      shape.capacity_over_demand = over;
      auto in = MakeInstance(shape);
      BatchScheduler s(options);
      auto t0 = std::chrono::steady_clock::now();
      double plan = s.Schedule(in).objective;
      double plan_s = Seconds(t0);
      auto lp = cpn::sched::LpLowerBound(in, options);
      if (!lp.ok()) {
        std::fprintf(stderr, "%s\n", lp.status().ToString().c_str());
        return 1;
      }
      double ratio = plan / lp->objective;
      if (over == 3.0) worst = std::max(worst, ratio);
      std::printf("%4.0f%% %6llu %6lld %6lld %6zu %12.1f %12.1f %8.4f %10.2f %10.1f %8.0f\n",
                  100 / over, static_cast<unsigned long long>(seed),
                  static_cast<long long>(shape.jobs), static_cast<long long>(shape.sites),
                  in.pools.size(), plan, lp->objective, ratio, plan_s * 1e3, lp->seconds * 1e3,
                  lp->seconds / plan_s);
      json += (first_quality ? "" : ",") + std::string("{\"load\":") + std::to_string(1 / over) +
              ",\"seed\":" + std::to_string(seed) +
              ",\"jobs\":2000,\"sites\":50,\"plan\":" + std::to_string(plan) +
              ",\"lp_bound\":" + std::to_string(lp->objective) +
              ",\"ratio_vs_lp_bound\":" + std::to_string(ratio) +
              ",\"plan_ms\":" + std::to_string(plan_s * 1e3) +
              ",\"lp_ms\":" + std::to_string(lp->seconds * 1e3) + "}";
      first_quality = false;
    }
  json += "],\"worst_ratio_vs_lp_bound_at_33pct_load\":" + std::to_string(worst) + ",\"exact\":[";

  std::printf("\nExact integer optimum (GLPK branch-and-bound) on small instances\n");
  std::printf("%6s %6s %12s %12s %8s %10s %10s %8s\n", "jobs", "sites", "plan", "ILP opt", "ratio",
              "plan ms", "ILP ms", "speedup");
  bool first = true;
  for (int64_t jobs : {40, 60, 80}) {
    InstanceShape shape;
    shape.jobs = jobs;
    shape.sites = 8;
    shape.pools_per_site = 2;
    shape.capacity_over_demand = 1.0;  // tight, so the choice matters
    auto in = MakeInstance(shape);
    BatchScheduler s(options);
    auto t0 = std::chrono::steady_clock::now();
    double plan = s.Schedule(in).objective;
    double plan_s = Seconds(t0);
    auto ilp = cpn::sched::LpLowerBound(in, options, /*integer=*/true);
    if (!ilp.ok()) {
      std::printf("%6lld: %s\n", static_cast<long long>(jobs), ilp.status().ToString().c_str());
      continue;
    }
    std::printf("%6lld %6d %12.2f %12.2f %8.4f %10.3f %10.1f %8.0f\n", static_cast<long long>(jobs),
                8, plan, ilp->objective, plan / ilp->objective, plan_s * 1e3, ilp->seconds * 1e3,
                ilp->seconds / plan_s);
    json += std::string(first ? "" : ",") + "{\"jobs\":" + std::to_string(jobs) +
            ",\"plan\":" + std::to_string(plan) + ",\"ilp\":" + std::to_string(ilp->objective) +
            ",\"ratio_vs_ilp\":" + std::to_string(plan / ilp->objective) +
            ",\"speedup\":" + std::to_string(ilp->seconds / plan_s) + "}";
    first = false;
  }
  json += "],\"speed\":[";

  std::printf("\nSpeed: one round over 1,000 pools (200 sites x 5, 20 areas), one core\n");
  std::printf("%5s %8s %8s %10s %12s %14s %10s\n", "load", "jobs", "pools", "round ms", "ns/job",
              "bytes/job", "placed");
  first = true;
  double base_ns = 0;
  struct Size {
    int64_t jobs;
    double over;
  };
  std::vector<Size> sizes = quick ? std::vector<Size>{{1000, 3.0}, {10000, 3.0}}
                                  : std::vector<Size>{{1000, 3.0},  {3000, 3.0},   {10000, 3.0},
                                                      {30000, 3.0}, {100000, 3.0}, {100000, 1.3}};
  for (const Size& size : sizes) {
    int64_t jobs = size.jobs;
    InstanceShape shape;
    shape.jobs = jobs;
    shape.sites = 200;
    shape.pools_per_site = 5;
    shape.areas = 20;
    shape.capacity_over_demand = size.over;
    auto in = MakeInstance(shape);
    BatchScheduler s(options);
    s.Schedule(in);  // warm the buffers, as a long-running server's would be
    double best = 1e9;
    int64_t placed = 0;
    for (int rep = 0; rep < 3; ++rep) {
      auto t0 = std::chrono::steady_clock::now();
      placed = s.Schedule(in).placed;
      best = std::min(best, Seconds(t0));
    }
    double ns_per_job = best * 1e9 / static_cast<double>(jobs);
    if (base_ns == 0) base_ns = ns_per_job;
    double bytes_per_job =
        static_cast<double>(s.WorkingSetBytes() + in.jobs.size() * sizeof(cpn::sched::BatchJob)) /
        static_cast<double>(jobs);
    std::printf("%4.0f%% %8lld %8zu %10.1f %12.0f %14.0f %10lld\n", 100 / size.over,
                static_cast<long long>(jobs), in.pools.size(), best * 1e3, ns_per_job,
                bytes_per_job, static_cast<long long>(placed));
    json += std::string(first ? "" : ",") + "{\"load\":" + std::to_string(1 / size.over) +
            ",\"jobs\":" + std::to_string(jobs) + ",\"pools\":" + std::to_string(in.pools.size()) +
            ",\"round_ms\":" + std::to_string(best * 1e3) +
            ",\"ns_per_job\":" + std::to_string(ns_per_job) +
            ",\"ns_per_job_ratio_vs_1k\":" + std::to_string(ns_per_job / base_ns) +
            ",\"bytes_per_job\":" + std::to_string(bytes_per_job) + "}";
    first = false;
  }
  json += "]}";
  std::printf("%s\n", json.c_str());
  return 0;
}
