#include "src/sim/engine.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <queue>

#include "src/core/ids.h"
#include "src/sched/batch_input.h"
#include "src/sched/scheduler.h"

namespace cpn::sim {
namespace {

enum class EventKind { kCompletion = 0, kArrival = 1, kRound = 2 };

struct Event {
  double time_s;
  EventKind kind;
  int64_t seq;
  size_t job;
  bool operator>(const Event& o) const {
    if (time_s != o.time_s) return time_s > o.time_s;
    if (kind != o.kind) return kind > o.kind;
    return seq > o.seq;
  }
};

struct Running {
  size_t job;
  std::string pool_id;
  int64_t cards;
  double end_s;
};

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size())));
  return v[std::min(v.size() - 1, i == 0 ? 0 : i - 1)];
}

}  // namespace

std::string_view BaselineName(Baseline b) {
  switch (b) {
    case Baseline::kNone:
      return "";
    case Baseline::kLocal:
      return "local";
    case Baseline::kRoundRobin:
      return "round-robin";
    case Baseline::kGreedyCheapest:
      return "greedy-cheapest";
  }
  return "";
}

Result<std::pair<std::optional<Policy>, Baseline>> ParseSimPolicy(std::string_view name) {
  for (Baseline b : {Baseline::kLocal, Baseline::kRoundRobin, Baseline::kGreedyCheapest}) {
    if (name == BaselineName(b)) return std::make_pair(std::optional<Policy>(), b);
  }
  auto p = ParsePolicy(name);
  if (!p.ok()) {
    return InvalidArgument(fmt::format(
        "unknown policy '{}' (expected cheapest, fastest, greenest, balanced, local, round-robin "
        "or greedy-cheapest)",
        name));
  }
  return std::make_pair(std::optional<Policy>(*p), Baseline::kNone);
}

double ErlangCMeanWait(int c, double lambda, double mu) {
  double a = lambda / mu, rho = a / c;
  // sum_{k<c} a^k/k! and a^c/c!, computed incrementally for stability.
  double term = 1, sum = 0;
  for (int k = 0; k < c; ++k) {
    sum += term;
    term *= a / (k + 1);
  }
  double top = term / (1 - rho);
  double p_wait = top / (sum + top);
  return p_wait / (c * mu - lambda);
}

SimReport Simulate(const Catalog& catalog, const Topology& topology,
                   const std::vector<WorkloadJob>& jobs, const SimOptions& options) {
  SimReport report;
  report.policy = options.baseline != Baseline::kNone ? std::string(BaselineName(options.baseline))
                  : options.policy                    ? std::string(PolicyName(*options.policy))
                                                      : "per-job";
  report.jobs = static_cast<int64_t>(jobs.size());
  std::vector<JobSpec> specs;
  specs.reserve(jobs.size());
  for (const auto& j : jobs) {
    specs.push_back(j.spec);
    if (options.policy) specs.back().policy = *options.policy;
    if (options.baseline != Baseline::kNone) specs.back().policy = Policy::kCheapest;
  }
  // For the local baseline: per area, the network with pools only there.
  std::map<std::string, Topology> local_view;
  if (options.baseline == Baseline::kLocal) {
    for (const Site& s : topology.sites()) {
      if (local_view.count(s.area)) continue;
      std::vector<Site> sites = topology.sites();
      for (Site& other : sites) {
        if (other.area != s.area) other.pools.clear();
      }
      local_view.emplace(s.area, Topology::Make(std::move(sites), topology.links(),
                                                topology.intra_area(), topology.default_link()));
    }
  }
  size_t rr_next = 0;  // round-robin position over pools
  std::vector<std::string> all_pools;
  for (const Site& s : topology.sites()) {
    for (const Pool& p : s.pools) all_pools.push_back(p.id);
  }
  std::map<std::string, sched::PoolLoad> loads;
  std::map<std::string, const Pool*> pools;
  std::map<std::string, const Site*> pool_site;
  for (const Site& s : topology.sites()) {
    for (const Pool& p : s.pools) {
      loads[p.id] = {p.cards, true};
      pools[p.id] = &p;
      pool_site[p.id] = &s;
    }
  }
  std::priority_queue<Event, std::vector<Event>, std::greater<>> events;
  int64_t seq = 0;
  for (size_t i = 0; i < jobs.size(); ++i) {
    events.push({jobs[i].arrival_s, EventKind::kArrival, seq++, i});
  }
  if (options.round_s > 0 && !jobs.empty()) {
    events.push({jobs.front().arrival_s, EventKind::kRound, seq++, 0});
  }
  std::vector<size_t> pending;
  std::vector<Running> running;
  std::vector<double> start_s(jobs.size(), -1), end_s(jobs.size(), -1);
  std::map<std::string, double> busy_card_s;  // by pool
  sched::BatchScheduler scheduler(options.batch);
  double now = 0;

  auto schedule = [&]() {
    if (pending.empty()) return;
    report.rounds++;
    std::vector<sched::PendingJob> round;
    round.reserve(pending.size());
    for (size_t j : pending) {
      round.push_back({&specs[j], (now - jobs[j].arrival_s) / 3600.0, false});
    }
    std::vector<sched::RunningJobInfo> info;
    info.reserve(running.size());
    for (const Running& r : running) {
      info.push_back({r.job, r.pool_id, r.cards, (r.end_s - now) / 3600.0, specs[r.job].priority,
                      false, specs[r.job].tenant});
    }
    // Where each pending job goes: a pool id, "" to wait, "!" if it never can.
    std::vector<std::string> where(pending.size());
    if (options.baseline == Baseline::kNone) {
      sched::BatchView view = sched::MakeBatchInput(catalog, topology, loads, round, info);
      const sched::PlacementPlan& plan = scheduler.Schedule(view.input);
      for (size_t k = 0; k < pending.size(); ++k) {
        const sched::JobPlacement& pl = plan.jobs[k];
        if (pl.outcome == sched::JobOutcome::kPlaced) {
          where[k] = view.pool_ids[static_cast<size_t>(pl.pool)];
        } else if (pl.outcome == sched::JobOutcome::kInfeasible) {
          where[k] = "!";
        }
      }
    } else {
      for (size_t k = 0; k < pending.size(); ++k) {
        const JobSpec& spec = specs[pending[k]];
        const Topology* view = &topology;
        if (options.baseline == Baseline::kLocal) {
          const Site* data = topology.FindSite(spec.dataset_site);
          if (data == nullptr) {
            where[k] = "!";
            continue;
          }
          view = &local_view.at(data->area);
        }
        sched::SchedulerInput in{&catalog, view, &loads};
        sched::Decision d = sched::Decide(spec, in);
        if (d.outcome == sched::Outcome::kInfeasible) {
          where[k] = "!";
          continue;
        }
        if (d.ranked.empty()) continue;
        std::string pick = d.ranked.front().pool_id;
        if (options.baseline == Baseline::kRoundRobin) {
          // The first fitting pool at or after the rotating position.
          size_t best = all_pools.size();
          for (const auto& o : d.ranked) {
            size_t idx = static_cast<size_t>(
                std::find(all_pools.begin(), all_pools.end(), o.pool_id) - all_pools.begin());
            size_t dist = (idx + all_pools.size() - rr_next % all_pools.size()) % all_pools.size();
            if (dist < best) {
              best = dist;
              pick = o.pool_id;
            }
          }
          rr_next = (rr_next + best + 1) % all_pools.size();
        }
        where[k] = pick;
        loads[pick].free_cards -= spec.cards;  // later jobs of this round see it taken
      }
    }
    std::vector<size_t> still;
    for (size_t k = 0; k < pending.size(); ++k) {
      size_t j = pending[k];
      if (where[k].empty()) {
        still.push_back(j);
        continue;
      }
      if (where[k] == "!") {
        report.never_placed++;
        continue;
      }
      const std::string& pool_id = where[k];
      const Pool* pool = pools[pool_id];
      const Site* site = pool_site[pool_id];
      const AcceleratorModel* model = catalog.Find(pool->accelerator);
      sched::Option est = sched::Estimate(specs[j], *site, *pool, *model, topology);
      double staging_s = est.transfer_h * 3600;
      // The trace's duration was observed on its reference card (the one it
      // names, else an A800-class card): keep its ratio to that card's
      // estimate, so a faster pool really finishes sooner.
      double run_s = jobs[j].duration_s;
      const AcceleratorModel* ref =
          catalog.Find(specs[j].accelerator.empty() ? "nvidia-a800-sxm" : specs[j].accelerator);
      if (ref != nullptr) {
        double ref_run_s = specs[j].work_fp16_eflop * 1e18 /
                           (static_cast<double>(specs[j].cards) * ref->fp16_equivalent_tflops() *
                            1e12 * ref->efficiency(specs[j].job_class));
        if (ref_run_s > 0) run_s = est.run_h * 3600 * (jobs[j].duration_s / ref_run_s);
      }
      double finish = now + staging_s + run_s;
      if (options.baseline == Baseline::kNone) loads[pool_id].free_cards -= specs[j].cards;
      running.push_back({j, pool_id, specs[j].cards, finish});
      events.push({finish, EventKind::kCompletion, seq++, j});
      start_s[j] = now;
      end_s[j] = finish;
      double held_card_h = static_cast<double>(specs[j].cards) * (staging_s + run_s) / 3600.0;
      busy_card_s[pool_id] += held_card_h * 3600;
      // Metering of what really ran, at the pool's price and the site's energy figures.
      double run_card_h = static_cast<double>(specs[j].cards) * run_s / 3600.0;
      double kwh = run_card_h * model->board_power_w / 1000.0 * site->pue;
      report.cost_cny += run_card_h * pool->price_cny_per_card_hour + est.transfer_cny;
      report.energy_kwh += kwh;
      report.carbon_t += kwh * site->carbon_kg_per_kwh * (1 - site->green_share) / 1000.0;
      if (est.transfer_h > 0) report.data_moved_tb += specs[j].dataset_gb / 1000.0;
      // Residency is re-checked here, independently of the scheduler.
      const Site* data = topology.FindSite(specs[j].dataset_site);
      if (data == nullptr || !ResidencyAllows(specs[j].residency, *data, *site)) {
        report.residency_violations++;
      }
    }
    pending.swap(still);
  };

  while (!events.empty()) {
    now = events.top().time_s;
    bool round_due = options.round_s <= 0;
    // Everything that happens at this instant, then one round.
    while (!events.empty() && events.top().time_s == now) {
      Event e = events.top();
      events.pop();
      report.events++;
      switch (e.kind) {
        case EventKind::kArrival:
          pending.push_back(e.job);
          break;
        case EventKind::kCompletion: {
          auto it = std::find_if(running.begin(), running.end(),
                                 [&](const Running& r) { return r.job == e.job; });
          if (it != running.end()) {
            loads[it->pool_id].free_cards += it->cards;
            *it = running.back();
            running.pop_back();
          }
          report.done++;
          if (options.progress && report.done % 1000 == 0) {
            options.progress(static_cast<double>(report.done) / static_cast<double>(report.jobs));
          }
          break;
        }
        case EventKind::kRound:
          round_due = true;
          if (!pending.empty() || !running.empty() ||
              report.done + report.never_placed < report.jobs) {
            events.push({now + options.round_s, EventKind::kRound, seq++, 0});
          }
          break;
      }
    }
    if (round_due) schedule();
    report.makespan_s = std::max(report.makespan_s, now);
  }

  std::vector<double> waits, completions;
  if (options.record_waits) {
    report.wait_s_by_job.assign(jobs.size(), -1);
    for (size_t j = 0; j < jobs.size(); ++j) {
      if (start_s[j] >= 0) report.wait_s_by_job[j] = start_s[j] - jobs[j].arrival_s;
    }
  }
  for (size_t j = 0; j < jobs.size(); ++j) {
    if (start_s[j] < 0) continue;
    waits.push_back(start_s[j] - jobs[j].arrival_s);
    completions.push_back(end_s[j] - jobs[j].arrival_s);
  }
  auto mean = [](const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return v.empty() ? 0 : s / static_cast<double>(v.size());
  };
  report.mean_wait_s = mean(waits);
  report.p50_wait_s = Percentile(waits, 0.5);
  report.p99_wait_s = Percentile(waits, 0.99);
  report.mean_completion_s = mean(completions);
  report.p50_completion_s = Percentile(completions, 0.5);
  report.p99_completion_s = Percentile(completions, 0.99);
  std::map<std::string, std::pair<double, double>> by_area;  // busy, available card-s
  for (const Site& s : topology.sites()) {
    for (const Pool& p : s.pools) {
      by_area[s.area].first += busy_card_s[p.id];
      by_area[s.area].second += static_cast<double>(p.cards) * report.makespan_s;
    }
  }
  for (const auto& [area, v] : by_area) {
    report.utilisation_by_area.push_back({area, v.second > 0 ? v.first / v.second : 0});
  }
  return report;
}

std::string SimReport::ToText() const {
  std::string out = fmt::format("policy {}\n", policy);
  out +=
      fmt::format("  jobs              {} ({} done, {} never placed)\n", jobs, done, never_placed);
  out += fmt::format("  wait (h)          mean {:.3f}  p50 {:.3f}  p99 {:.3f}\n",
                     mean_wait_s / 3600, p50_wait_s / 3600, p99_wait_s / 3600);
  out += fmt::format("  completion (h)    mean {:.3f}  p50 {:.3f}  p99 {:.3f}\n",
                     mean_completion_s / 3600, p50_completion_s / 3600, p99_completion_s / 3600);
  out += fmt::format("  cost              {:.0f} CNY\n", cost_cny);
  out += fmt::format("  energy            {:.0f} kWh\n", energy_kwh);
  out += fmt::format("  carbon            {:.3f} t CO2\n", carbon_t);
  out += fmt::format("  data moved        {:.3f} TB\n", data_moved_tb);
  out += fmt::format("  residency breaks  {}\n", residency_violations);
  out += "  utilisation       ";
  for (const auto& [area, u] : utilisation_by_area)
    out += fmt::format("{} {:.1f}%  ", area, u * 100);
  out += fmt::format("\n  simulated         {:.1f} h, {} events, {} rounds\n", makespan_s / 3600,
                     events, rounds);
  return out;
}

std::string SimReport::ToJson() const {
  nlohmann::json util = nlohmann::json::object();
  for (const auto& [area, u] : utilisation_by_area) util[area] = u;
  nlohmann::json j{
      {"policy", policy},
      {"jobs", jobs},
      {"done", done},
      {"never_placed", never_placed},
      {"wait_s", {{"mean", mean_wait_s}, {"p50", p50_wait_s}, {"p99", p99_wait_s}}},
      {"completion_s",
       {{"mean", mean_completion_s}, {"p50", p50_completion_s}, {"p99", p99_completion_s}}},
      {"cost_cny", cost_cny},
      {"energy_kwh", energy_kwh},
      {"carbon_t", carbon_t},
      {"data_moved_tb", data_moved_tb},
      {"residency_violations", residency_violations},
      {"makespan_s", makespan_s},
      {"utilisation_by_area", util},
      {"events", events},
      {"rounds", rounds}};
  return j.dump(2);
}

}  // namespace cpn::sim
