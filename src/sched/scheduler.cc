#include "src/sched/scheduler.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace cpn::sched {

std::string_view RejectReasonName(RejectReason r) {
  switch (r) {
    case RejectReason::kAccelerator:
      return "accelerator";
    case RejectReason::kMemory:
      return "memory";
    case RejectReason::kSoftware:
      return "software";
    case RejectReason::kResidency:
      return "residency";
    case RejectReason::kCapacity:
      return "capacity";
    case RejectReason::kSiteUnavailable:
      return "site_unavailable";
    case RejectReason::kDeadline:
      return "deadline";
    case RejectReason::kBudget:
      return "budget";
    case RejectReason::kBusy:
      return "busy";
  }
  return "unknown";
}

std::string_view OutcomeName(Outcome o) {
  switch (o) {
    case Outcome::kPlaced:
      return "placed";
    case Outcome::kQueued:
      return "queued";
    case Outcome::kInfeasible:
      return "infeasible";
  }
  return "infeasible";
}

Option Estimate(const JobSpec& job, const Site& site, const Pool& pool,
                const AcceleratorModel& model, const Topology& topology) {
  Option o;
  o.site_id = site.id;
  o.pool_id = pool.id;
  o.accelerator = model.id;
  o.cards = job.cards;
  o.price_cny_per_card_hour = pool.price_cny_per_card_hour;
  double flops_per_s = static_cast<double>(job.cards) * model.fp16_equivalent_tflops() * 1e12 *
                       model.efficiency(job.job_class);
  o.run_h = job.work_fp16_eflop * 1e18 / flops_per_s / 3600.0;
  bool has_copy = job.dataset_site == site.id ||
                  std::find(job.dataset_replicas.begin(), job.dataset_replicas.end(), site.id) !=
                      job.dataset_replicas.end();
  if (!has_copy && job.dataset_gb > 0) {
    const Site* data_site = topology.FindSite(job.dataset_site);
    const Link& link = data_site != nullptr ? topology.LinkBetween(data_site->area, site.area)
                                            : topology.default_link();
    // Bulk transfer at the link's available bandwidth plus a few round trips
    // to set up the control and data connections.
    double seconds = job.dataset_gb * 8.0 / link.bandwidth_gbps + 3 * link.rtt_ms / 1000.0;
    o.transfer_h = seconds / 3600.0;
    o.transfer_cny = job.dataset_gb * link.cny_per_gb;
  }
  o.completion_h = o.transfer_h + o.run_h;
  o.compute_cny = static_cast<double>(job.cards) * o.run_h * pool.price_cny_per_card_hour;
  o.total_cny = o.compute_cny + o.transfer_cny;
  o.energy_kwh = static_cast<double>(job.cards) * model.board_power_w / 1000.0 * o.run_h * site.pue;
  o.electricity_cny = o.energy_kwh * site.electricity_cny_per_kwh;
  o.carbon_kg = o.energy_kwh * site.carbon_kg_per_kwh * (1.0 - site.green_share);
  return o;
}

namespace {

// Static fit: reasons that hold whatever the load. Returns true if it fits.
bool Fits(const JobSpec& job, const AcceleratorModel& model, const Pool& pool,
          std::vector<Rejection>* rejected) {
  auto reject = [&](RejectReason r, std::string d) {
    if (rejected) rejected->push_back({pool.id, r, std::move(d)});
    return false;
  };
  if (!job.accelerator.empty() && job.accelerator != model.id) {
    return reject(RejectReason::kAccelerator,
                  fmt::format("has {}, job asks for {}", model.id, job.accelerator));
  }
  if (model.memory_gb < job.min_memory_gb) {
    return reject(RejectReason::kMemory,
                  fmt::format("{} GB per card < {} GB needed", model.memory_gb, job.min_memory_gb));
  }
  for (const auto& sw : job.software) {
    if (!model.HasSoftware(sw)) {
      return reject(RejectReason::kSoftware, fmt::format("{} does not run {}", model.id, sw));
    }
  }
  if (pool.cards < job.cards) {
    return reject(RejectReason::kCapacity,
                  fmt::format("pool has {} cards, gang needs {}", pool.cards, job.cards));
  }
  return true;
}

// The rejection reason for a site the job's residency rule excludes.
std::string ResidencyReasonFor(Residency residency, const Site& data, const Site& site) {
  switch (residency) {
    case Residency::kCountry:
      return fmt::format("data may not leave {} (site is in {})", data.country(), site.country());
    case Residency::kProvince:
      return fmt::format("data may not leave {} (site is in {})", data.jurisdiction,
                         site.jurisdiction);
    case Residency::kSite:
      return "data may not leave its site " + data.id;
    case Residency::kAnywhere:
      break;
  }
  return "";
}

std::string ResidencyReason(const JobSpec& job, const Site& data, const Site& site) {
  if (!job.classification.empty() && job.classification != "public") {
    return ResidencyReasonFor(job.residency, data, site) + " (its dataset is classified " +
           job.classification + ")";
  }
  return ResidencyReasonFor(job.residency, data, site);
}

double PolicyScore(Policy p, const Option& o, double min_cost, double min_time, double min_carbon) {
  switch (p) {
    case Policy::kCheapest:
      return o.total_cny;
    case Policy::kFastest:
      return o.completion_h;
    case Policy::kGreenest:
      return o.carbon_kg;
    case Policy::kBalanced:
      // Each metric relative to the best candidate's, equally weighted; +1 keeps
      // fully green (zero-carbon) sites from dividing by zero.
      return (o.total_cny / std::max(min_cost, 1e-9) + o.completion_h / std::max(min_time, 1e-9) +
              (o.carbon_kg + 1.0) / (min_carbon + 1.0)) /
             3.0;
  }
  return o.total_cny;
}

std::string DescribeMetric(Policy p, const Option& o) {
  switch (p) {
    case Policy::kCheapest:
      return fmt::format("{:.0f} CNY", o.total_cny);
    case Policy::kFastest:
      return fmt::format("{:.1f} h", o.completion_h);
    case Policy::kGreenest:
      return fmt::format("{:.1f} kg CO2", o.carbon_kg);
    case Policy::kBalanced:
      return fmt::format("score {:.3f}", o.score);
  }
  return "";
}

void Rank(Policy policy, std::vector<Option>* options) {
  if (options->empty()) return;
  double min_cost = std::numeric_limits<double>::max(), min_time = min_cost, min_carbon = min_cost;
  for (const auto& o : *options) {
    min_cost = std::min(min_cost, o.total_cny);
    min_time = std::min(min_time, o.completion_h);
    min_carbon = std::min(min_carbon, o.carbon_kg);
  }
  for (auto& o : *options) o.score = PolicyScore(policy, o, min_cost, min_time, min_carbon);
  std::sort(options->begin(), options->end(), [](const Option& a, const Option& b) {
    if (a.score != b.score) return a.score < b.score;
    return a.pool_id < b.pool_id;
  });
}

}  // namespace

Decision Decide(const JobSpec& job, const SchedulerInput& in) {
  Decision d;
  const Topology& topo = *in.topology;
  const Site* data_site = topo.FindSite(job.dataset_site);
  if (data_site == nullptr) {
    d.summary = "dataset site " + job.dataset_site + " is not registered in the network";
    return d;
  }
  std::vector<Option> busy;
  for (const Site& site : topo.sites()) {
    for (const Pool& pool : site.pools) {
      const AcceleratorModel* model = in.catalog->Find(pool.accelerator);
      if (model == nullptr) {
        d.rejected.push_back({pool.id, RejectReason::kAccelerator,
                              "accelerator " + pool.accelerator + " is not in the catalog"});
        continue;
      }
      if (!Fits(job, *model, pool, &d.rejected)) continue;
      if (!ResidencyAllows(job.residency, *data_site, site)) {
        d.rejected.push_back(
            {pool.id, RejectReason::kResidency, ResidencyReason(job, *data_site, site)});
        continue;
      }
      PoolLoad load{pool.cards, true};
      if (in.loads != nullptr) {
        auto it = in.loads->find(pool.id);
        if (it != in.loads->end()) load = it->second;
      }
      if (!load.available) {
        d.rejected.push_back({pool.id, RejectReason::kSiteUnavailable, "site is down or draining"});
        continue;
      }
      Option o = Estimate(job, site, pool, *model, topo);
      o.free_cards = load.free_cards;
      if (job.deadline_h && o.completion_h > *job.deadline_h) {
        d.rejected.push_back({pool.id, RejectReason::kDeadline,
                              fmt::format("finishes in {:.1f} h > deadline {:.1f} h",
                                          o.completion_h, *job.deadline_h)});
        continue;
      }
      if (job.budget_cny && o.total_cny > *job.budget_cny) {
        d.rejected.push_back(
            {pool.id, RejectReason::kBudget,
             fmt::format("costs {:.0f} CNY > budget {:.0f} CNY", o.total_cny, *job.budget_cny)});
        continue;
      }
      if (load.free_cards < job.cards) {
        busy.push_back(o);
        continue;
      }
      d.ranked.push_back(o);
    }
  }
  Rank(job.policy, &d.ranked);
  Rank(job.policy, &busy);
  for (const auto& o : busy) {
    d.rejected.push_back({o.pool_id, RejectReason::kBusy,
                          fmt::format("{} of {} cards free now", o.free_cards, job.cards)});
  }
  std::sort(d.rejected.begin(), d.rejected.end(),
            [](const Rejection& a, const Rejection& b) { return a.pool_id < b.pool_id; });

  // Home-site comparison: cheapest fitting pool at the submitter's home site.
  if (const Site* home = topo.FindSite(job.home_site)) {
    for (const Pool& pool : home->pools) {
      const AcceleratorModel* model = in.catalog->Find(pool.accelerator);
      if (model == nullptr || !Fits(job, *model, pool, nullptr)) continue;
      Option o = Estimate(job, *home, pool, *model, topo);
      if (!d.home || o.total_cny < d.home->total_cny ||
          (o.total_cny == d.home->total_cny && o.pool_id < d.home->pool_id)) {
        d.home = o;
      }
    }
    if (!d.home) d.home_note = "home site " + home->id + " has no pool that fits this job";
  } else {
    d.home_note = "home site " + job.home_site + " is not registered";
  }

  if (!d.ranked.empty()) {
    d.outcome = Outcome::kPlaced;
    const Option& best = d.ranked.front();
    d.summary = fmt::format("{} {}: best by policy {} ({}) among {} pool(s) with free cards",
                            "placed on", best.pool_id, PolicyName(job.policy),
                            DescribeMetric(job.policy, best), d.ranked.size());
    if (d.ranked.size() > 1) {
      const Option& second = d.ranked[1];
      d.summary +=
          fmt::format("; runner-up {} ({})", second.pool_id, DescribeMetric(job.policy, second));
    }
  } else if (!busy.empty()) {
    d.outcome = Outcome::kQueued;
    d.summary = fmt::format("queued: {} pool(s) fit but none has {} free cards now; best is {}",
                            busy.size(), job.cards, busy.front().pool_id);
  } else {
    d.outcome = Outcome::kInfeasible;
    std::map<RejectReason, int> counts;
    for (const auto& r : d.rejected) counts[r.reason]++;
    std::string parts;
    for (const auto& [reason, n] : counts) {
      parts += fmt::format("{}{} {}", parts.empty() ? "" : ", ", n, RejectReasonName(reason));
    }
    d.summary = d.rejected.empty() ? "infeasible: the network has no pools"
                                   : "infeasible: no pool fits (rejections: " + parts + ")";
  }
  return d;
}

OwnershipCost EstimateOwnership(const JobSpec& job, const AcceleratorModel& model, double run_h,
                                const Site& home_site) {
  OwnershipCost c;
  c.servers = (job.cards + model.cards_per_server - 1) / model.cards_per_server;
  c.capex_cny = static_cast<double>(c.servers) * model.server_price_cny;
  double kwh =
      static_cast<double>(job.cards) * model.board_power_w / 1000.0 * run_h * home_site.pue;
  c.energy_cny = kwh * home_site.electricity_cny_per_kwh;
  c.total_cny = c.capex_cny + c.energy_cny;
  return c;
}

}  // namespace cpn::sched
