// bench/run quote: the time of one quote (a full Decide over every pool of the
// sample topology), against the baseline of estimating every pool without
// filtering or ranking, measured in the same run.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "src/core/catalog.h"
#include "src/core/topology.h"
#include "src/sched/scheduler.h"

using namespace cpn;  // NOLINT: a benchmark main

namespace {

template <typename F>
double MedianNs(F&& f, int reps, int inner) {
  std::vector<double> samples;
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < inner; ++i) f();
    auto t1 = std::chrono::steady_clock::now();
    samples.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count() / inner);
  }
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2];
}

}  // namespace

int main() {
  auto catalog = Catalog::LoadDefault();
  if (!catalog.ok()) {
    std::fprintf(stderr, "%s\n", catalog.status().ToString().c_str());
    return 1;
  }
  auto topo = Topology::LoadDefault(*catalog);
  if (!topo.ok()) {
    std::fprintf(stderr, "%s\n", topo.status().ToString().c_str());
    return 1;
  }
  JobSpec job;
  job.name = "bench";
  job.tenant = "bench";
  job.cards = 16;
  job.min_memory_gb = 64;
  job.software = {"pytorch"};
  job.work_fp16_eflop = 1000;
  job.dataset_site = job.home_site = "cpn:cn.bj/bj-cloud/bj-01";
  job.dataset_gb = 2000;
  job.residency = Residency::kCountry;
  size_t pools = 0;
  for (const auto& s : topo->sites()) pools += s.pools.size();

  sched::SchedulerInput in{&*catalog, &*topo, nullptr};
  volatile double sink = 0;
  std::printf("%-10s %12s %14s %14s\n", "policy", "pools", "quote (us)", "estimate-only (us)");
  std::string json = "{\"bench\":\"quote\",\"pools\":" + std::to_string(pools) + ",\"results\":[";
  bool first = true;
  for (Policy p : {Policy::kCheapest, Policy::kFastest, Policy::kGreenest, Policy::kBalanced}) {
    job.policy = p;
    double quote_ns =
        MedianNs([&] { sink = sink + sched::Decide(job, in).ranked.size(); }, 15, 200);
    double base_ns = MedianNs(
        [&] {
          for (const auto& s : topo->sites()) {
            for (const auto& pool : s.pools) {
              sink =
                  sink +
                  sched::Estimate(job, s, pool, *catalog->Find(pool.accelerator), *topo).total_cny;
            }
          }
        },
        15, 200);
    std::printf("%-10s %12zu %14.1f %14.1f\n", std::string(PolicyName(p)).c_str(), pools,
                quote_ns / 1000, base_ns / 1000);
    json += std::string(first ? "" : ",") + "{\"policy\":\"" + std::string(PolicyName(p)) +
            "\",\"quote_us\":" + std::to_string(quote_ns / 1000) +
            ",\"estimate_only_us\":" + std::to_string(base_ns / 1000) +
            ",\"ratio_vs_estimate_only\":" + std::to_string(quote_ns / base_ns) + "}";
    first = false;
  }
  json += "]}";
  std::printf("%s\n", json.c_str());
  return 0;
}
