#include "src/sim/engine.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <queue>

#include "src/core/ids.h"
#include "src/sched/batch_input.h"
#include "src/sched/scheduler.h"

namespace cpn::sim {
namespace {

// At one instant: completions first (their cards are free for the round),
// then transfers, recoveries, outages, and the round last.
enum Kind : uint8_t { kCompletion = 0, kTransfer = 1, kRecovery = 2, kOutage = 3, kRound = 4 };

struct Event {
  double time_s;
  uint8_t kind;
  uint32_t a, b;  // completion: job, attempt; transfer: link, version; outage: index
  int64_t seq;
  bool operator>(const Event& o) const {
    if (time_s != o.time_s) return time_s > o.time_s;
    if (kind != o.kind) return kind > o.kind;
    return seq > o.seq;
  }
};

enum class Phase : uint8_t { kQueued, kStaging, kRunning, kDone, kDropped };

struct JobState {
  double placed_s = -1;  // the last placement
  double end_s = -1;
  double staging_start_s = 0;
  double run_start_s = 0;
  double run_s = 0;
  float transfer_cny = 0;
  int32_t pool = -1;
  int32_t slot = -1;  // index into the running arrays
  uint32_t attempt = 0;
  uint32_t link = 0;
  Phase phase = Phase::kQueued;
};

// A directed link between two areas under processor sharing: n transfers each
// move at min(one transfer's bandwidth, capacity / n). `v` is the data (GB)
// every transfer active since the start has moved; a transfer of size S
// joining at v0 is done when v = v0 + S.
struct LinkState {
  double gb_per_s = 1;       // one transfer's rate
  double capacity_gb_s = 1;  // shared by all
  double Rate() const { return std::min(gb_per_s, capacity_gb_s / std::max(1, active)); }
  double setup_s = 0;
  double v = 0, last_s = 0;
  int32_t active = 0;
  uint32_t version = 0;
  struct Entry {
    double finish_v;
    uint32_t job, attempt;
    bool operator>(const Entry& o) const {
      if (finish_v != o.finish_v) return finish_v > o.finish_v;
      return job > o.job;
    }
  };
  std::priority_queue<Entry, std::vector<Entry>, std::greater<>> queue;

  void Advance(double now) {
    if (active > 0) v += (now - last_s) * Rate();
    last_s = now;
  }
};

// Integral over time of a daily curve of 24 hourly factors, in factor-seconds.
class DailyIntegral {
 public:
  explicit DailyIntegral(const std::array<double, 24>& f) : f_(f) {
    prefix_[0] = 0;
    for (size_t h = 0; h < 24; ++h) prefix_[h + 1] = prefix_[h] + f[h] * 3600;
  }
  double Between(double a_s, double b_s) const { return At(b_s) - At(a_s); }
  double Factor(double t_s) const { return f_[HourOf(t_s)]; }
  static size_t HourOf(double t_s) {
    double day = std::floor(t_s / 86400);
    return std::min<size_t>(23, static_cast<size_t>((t_s - day * 86400) / 3600));
  }

 private:
  double At(double t_s) const {
    double day = std::floor(t_s / 86400);
    double rem = t_s - day * 86400;
    size_t h = std::min<size_t>(23, static_cast<size_t>(rem / 3600));
    return day * prefix_[24] + prefix_[h] + f_[h] * (rem - static_cast<double>(h) * 3600);
  }
  std::array<double, 24> f_;
  double prefix_[25];
};

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size())));
  return v[std::min(v.size() - 1, i == 0 ? 0 : i - 1)];
}

class Engine {
 public:
  Engine(const Catalog& catalog, const Topology& topology, const std::vector<WorkloadJob>& jobs,
         const SimOptions& options)
      : catalog_(catalog), topo_(topology), jobs_(jobs), opt_(options), scheduler_(options.batch) {}

  SimReport Run();

 private:
  void Init();
  void Round();
  void RoundBatch();
  void RoundBaseline();
  void Start(uint32_t j, uint32_t pool);
  void BeginRun(uint32_t j, double at_s);
  void Finish(uint32_t j);
  void Stop(uint32_t j);  // an outage: lose the attempt, queue again
  void RemoveRunning(uint32_t j);
  void Reschedule(uint32_t link);
  void OnTransfer(uint32_t link, uint32_t version);
  void SetSiteDown(uint32_t site, bool down);
  void Meter(uint32_t j, double from_s, double to_s);
  void Busy(uint32_t area, int64_t delta_cards);
  void FlushBusy(uint32_t area);
  void Drop(uint32_t j);
  void Push(double t, uint8_t kind, uint32_t a, uint32_t b) {
    events_.push({t, kind, a, b, seq_++});
  }
  void Progress() {
    int64_t ended = report_.done + report_.never_placed;
    if (opt_.progress && ended % 1000 == 0) {
      opt_.progress(static_cast<double>(ended) / static_cast<double>(report_.jobs));
    }
  }

  const Catalog& catalog_;
  const Topology& topo_;
  const std::vector<WorkloadJob>& jobs_;
  const SimOptions& opt_;
  sched::BatchScheduler scheduler_;
  SimReport report_;
  double now_ = 0;

  // Static network facts, by the batch input's pool, site and area indices.
  sched::BatchInput in_;
  std::vector<sched::BatchJob> all_jobs_;  // by workload job
  std::vector<std::string> pool_ids_;
  std::vector<const Pool*> pool_;
  std::vector<const Site*> pool_site_ptr_;
  std::vector<const AcceleratorModel*> pool_model_;
  std::vector<uint32_t> pool_area_;
  std::vector<float> base_price_, base_carbon_;  // by pool, by site
  std::vector<std::vector<uint32_t>> site_pools_;
  std::vector<const Site*> site_ptr_;
  std::vector<uint32_t> site_area_;
  std::vector<std::string> area_names_;
  std::vector<int64_t> area_cards_;
  std::vector<DailyIntegral> tariff_, carbon_;  // by area
  std::vector<double> ref_ratio_;               // by job: duration / reference estimate
  std::vector<int32_t> data_site_;              // by job; -1 if not in the topology

  // Dynamic state.
  std::vector<int32_t> free_;  // by pool
  std::vector<int32_t> down_;  // by site: outages in force
  int64_t outages_in_force_ = 0;
  std::vector<JobState> state_;
  std::vector<uint32_t> pending_;
  std::vector<sched::RunningJob> running_;
  std::vector<double> running_end_s_;
  std::vector<LinkState> links_;  // areas x areas, directed
  std::priority_queue<Event, std::vector<Event>, std::greater<>> events_;
  int64_t seq_ = 0;
  bool dirty_ = true;
  size_t priced_hour_ = 99;
  double staging_total_s_ = 0;
  int64_t staged_ = 0;
  std::vector<int64_t> busy_cards_;
  std::vector<double> busy_since_s_;
  std::vector<std::vector<double>> busy_card_s_;  // by area, by bucket

  // Baselines: the string-keyed loads Decide reads, and for `local` a view
  // per area with only that area's pools.
  std::map<std::string, sched::PoolLoad> loads_;
  std::map<std::string, Topology> local_view_;
  size_t rr_next_ = 0;
};

void Engine::Init() {
  report_.policy = opt_.baseline != Baseline::kNone ? std::string(BaselineName(opt_.baseline))
                   : opt_.policy                    ? std::string(PolicyName(*opt_.policy))
                                                    : "per-job";
  report_.jobs = static_cast<int64_t>(jobs_.size());
  report_.utilisation_bucket_s = opt_.utilisation_bucket_s > 0 ? opt_.utilisation_bucket_s : 3600;
  // Interning once: all jobs as if pending, no load. Rounds copy from it.
  std::map<std::string, sched::PoolLoad> full;
  for (const Site& s : topo_.sites()) {
    for (const Pool& p : s.pools) full[p.id] = {p.cards, true};
  }
  std::vector<sched::PendingJob> all;
  all.reserve(jobs_.size());
  for (const WorkloadJob& w : jobs_) all.push_back({&w.spec, 0, false});
  sched::BatchView view = sched::MakeBatchInput(catalog_, topo_, full, all, {});
  in_ = std::move(view.input);
  all_jobs_ = std::move(in_.jobs);
  in_.jobs.clear();
  pool_ids_ = std::move(view.pool_ids);
  // Pools in the order MakeBatchInput laid them out.
  std::map<std::string, uint32_t> area_index;
  for (const Site& s : topo_.sites()) {
    uint32_t site = static_cast<uint32_t>(site_ptr_.size());
    site_ptr_.push_back(&s);
    site_pools_.emplace_back();
    auto [it, added] = area_index.emplace(s.area, static_cast<uint32_t>(area_names_.size()));
    if (added) {
      area_names_.push_back(s.area);
      area_cards_.push_back(0);
    }
    site_area_.push_back(it->second);
    base_carbon_.push_back(in_.sites[site].carbon_kg_per_kwh);
    for (const Pool& p : s.pools) {
      const AcceleratorModel* m = catalog_.Find(p.accelerator);
      if (m == nullptr) continue;
      site_pools_[site].push_back(static_cast<uint32_t>(pool_.size()));
      pool_.push_back(&p);
      pool_site_ptr_.push_back(&s);
      pool_model_.push_back(m);
      pool_area_.push_back(it->second);
      area_cards_[it->second] += p.cards;
      base_price_.push_back(static_cast<float>(p.price_cny_per_card_hour));
    }
  }
  for (const std::string& a : area_names_) {
    tariff_.emplace_back(topo_.Diurnal(a).tariff_factor);
    carbon_.emplace_back(topo_.Diurnal(a).carbon_factor);
  }
  const size_t A = area_names_.size(), P = pool_.size();
  links_.resize(A * A);
  for (size_t a = 0; a < A; ++a) {
    for (size_t b = 0; b < A; ++b) {
      const Link& l = topo_.LinkBetween(area_names_[a], area_names_[b]);
      links_[a * A + b].gb_per_s = l.bandwidth_gbps / 8.0;
      links_[a * A + b].capacity_gb_s = std::max(l.bandwidth_gbps, l.capacity_gbps) / 8.0;
      links_[a * A + b].setup_s = 3 * l.rtt_ms / 1000.0;
    }
  }
  free_.resize(P);
  for (size_t p = 0; p < P; ++p) free_[p] = static_cast<int32_t>(pool_[p]->cards);
  down_.assign(site_ptr_.size(), 0);
  busy_cards_.assign(A, 0);
  busy_since_s_.assign(A, 0);
  busy_card_s_.assign(A, {});

  // Per job: where its data is, and how its trace duration relates to the
  // estimate on the card it was observed on.
  state_.resize(jobs_.size());
  ref_ratio_.assign(jobs_.size(), -1);
  data_site_.assign(jobs_.size(), -1);
  std::map<std::string, SimReport::Mapped> mapped;
  for (size_t j = 0; j < jobs_.size(); ++j) {
    const WorkloadJob& w = jobs_[j];
    const Site* data = topo_.FindSite(w.spec.dataset_site);
    if (data != nullptr) data_site_[j] = static_cast<int32_t>(data - topo_.sites().data());
    double tflops = 0, eff = 0;
    if (w.ref_fp16_tflops > 0) {
      tflops = w.ref_fp16_tflops;
      eff = AcceleratorModel{}.efficiency(w.spec.job_class);
      auto& m = mapped[w.mapped_from];
      m.name = w.mapped_from;
      m.fp16_tflops = w.ref_fp16_tflops;
      m.jobs++;
    } else if (const AcceleratorModel* ref = catalog_.Find(
                   w.spec.accelerator.empty() ? "nvidia-a800-sxm" : w.spec.accelerator)) {
      tflops = ref->fp16_equivalent_tflops();
      eff = ref->efficiency(w.spec.job_class);
    }
    double ref_run_s = tflops > 0 ? w.spec.work_fp16_eflop * 1e18 /
                                        (static_cast<double>(w.spec.cards) * tflops * 1e12 * eff)
                                  : 0;
    if (ref_run_s > 0) ref_ratio_[j] = w.duration_s / ref_run_s;
    if (opt_.policy) all_jobs_[j].policy = *opt_.policy;
  }
  for (auto& [name, m] : mapped) report_.mapped_accelerators.push_back(m);

  if (opt_.baseline != Baseline::kNone) {
    loads_ = full;
    if (opt_.baseline == Baseline::kLocal) {
      for (const Site& s : topo_.sites()) {
        if (local_view_.count(s.area)) continue;
        std::vector<Site> sites = topo_.sites();
        for (Site& other : sites) {
          if (other.area != s.area) other.pools.clear();
        }
        local_view_.emplace(s.area, Topology::Make(std::move(sites), topo_.links(),
                                                   topo_.intra_area(), topo_.default_link()));
      }
    }
  }
  for (size_t i = 0; i < opt_.outages.size(); ++i) {
    Push(opt_.outages[i].start_s, kOutage, static_cast<uint32_t>(i), 0);
  }
}

void Engine::FlushBusy(uint32_t a) {
  const double bucket = report_.utilisation_bucket_s;
  double t = busy_since_s_[a];
  if (busy_cards_[a] > 0) {
    auto& buckets = busy_card_s_[a];
    while (t < now_) {
      size_t b = static_cast<size_t>(t / bucket);
      double end = std::min(now_, static_cast<double>(b + 1) * bucket);
      if (end <= t) end = now_;  // guards rounding at a bucket edge
      if (buckets.size() <= b) buckets.resize(b + 1, 0);
      buckets[b] += static_cast<double>(busy_cards_[a]) * (end - t);
      t = end;
    }
  }
  busy_since_s_[a] = now_;
}

void Engine::Busy(uint32_t area, int64_t delta_cards) {
  FlushBusy(area);
  busy_cards_[area] += delta_cards;
}

void Engine::Drop(uint32_t j) {
  state_[j].phase = Phase::kDropped;
  report_.never_placed++;
  Progress();
}

void Engine::Start(uint32_t j, uint32_t p) {
  const WorkloadJob& w = jobs_[j];
  const JobSpec& spec = w.spec;
  JobState& st = state_[j];
  sched::Option est = sched::Estimate(spec, *pool_site_ptr_[p], *pool_[p], *pool_model_[p], topo_);
  st.run_s = ref_ratio_[j] > 0 ? est.run_h * 3600 * ref_ratio_[j] : w.duration_s;
  st.pool = static_cast<int32_t>(p);
  st.placed_s = now_;
  st.transfer_cny = static_cast<float>(est.transfer_cny);
  const int32_t cards = static_cast<int32_t>(spec.cards);
  free_[p] -= cards;
  if (opt_.baseline != Baseline::kNone) loads_[pool_ids_[p]].free_cards -= cards;
  st.slot = static_cast<int32_t>(running_.size());
  running_.push_back({j, p, cards, 0, all_jobs_[j].priority, false, all_jobs_[j].tenant});
  running_end_s_.push_back(now_ + est.transfer_h * 3600 + st.run_s);
  Busy(pool_area_[p], cards);
  // Residency is checked again here, independently of the scheduler.
  if (!ResidencyAllows(spec.residency, *site_ptr_[static_cast<size_t>(data_site_[j])],
                       *pool_site_ptr_[p])) {
    report_.residency_violations++;
  }
  if (est.transfer_h > 0) {
    const uint32_t link = static_cast<uint32_t>(
        site_area_[static_cast<size_t>(data_site_[j])] * area_names_.size() + pool_area_[p]);
    LinkState& l = links_[link];
    l.Advance(now_);
    l.queue.push({l.v + std::max(spec.dataset_gb, 1e-9), j, st.attempt});
    l.active++;
    st.phase = Phase::kStaging;
    st.staging_start_s = now_;
    st.link = link;
    Reschedule(link);
  } else {
    BeginRun(j, now_);
  }
}

void Engine::BeginRun(uint32_t j, double at_s) {
  JobState& st = state_[j];
  st.phase = Phase::kRunning;
  st.run_start_s = at_s;
  running_end_s_[static_cast<size_t>(st.slot)] = at_s + st.run_s;
  Push(at_s + st.run_s, kCompletion, j, st.attempt);
}

void Engine::Reschedule(uint32_t link) {
  LinkState& l = links_[link];
  l.version++;
  while (!l.queue.empty()) {
    const auto& e = l.queue.top();
    const JobState& st = state_[e.job];
    if (st.attempt == e.attempt && st.phase == Phase::kStaging) break;
    l.queue.pop();  // stopped by an outage
  }
  if (l.active == 0 || l.queue.empty()) return;
  double left_gb = std::max(0.0, l.queue.top().finish_v - l.v);
  Push(now_ + left_gb / l.Rate(), kTransfer, link, l.version);
}

void Engine::OnTransfer(uint32_t link, uint32_t version) {
  LinkState& l = links_[link];
  if (version != l.version) return;  // superseded by a later change on the link
  l.Advance(now_);
  const double eps = 1e-9 * std::max(1.0, l.v);
  while (!l.queue.empty() && l.queue.top().finish_v <= l.v + eps) {
    LinkState::Entry e = l.queue.top();
    l.queue.pop();
    JobState& st = state_[e.job];
    if (st.attempt != e.attempt || st.phase != Phase::kStaging) continue;
    l.active--;
    const JobSpec& spec = jobs_[e.job].spec;
    report_.data_moved_tb += spec.dataset_gb / 1000.0;
    report_.cost_cny += st.transfer_cny;
    double ready = now_ + l.setup_s;
    staging_total_s_ += ready - st.staging_start_s;
    staged_++;
    BeginRun(e.job, ready);
  }
  Reschedule(link);
}

void Engine::Meter(uint32_t j, double from_s, double to_s) {
  if (to_s <= from_s) return;
  const JobState& st = state_[j];
  const size_t p = static_cast<size_t>(st.pool);
  const Site& site = *pool_site_ptr_[p];
  const double cards = static_cast<double>(jobs_[j].spec.cards);
  const double dur_h = (to_s - from_s) / 3600;
  const double kw = cards * pool_model_[p]->board_power_w / 1000.0 * site.pue;
  const uint32_t a = pool_area_[p];
  // The pool's price holds electricity at the site's mean tariff; the hour's
  // tariff moves it by the difference.
  report_.cost_cny +=
      cards * dur_h * pool_[p]->price_cny_per_card_hour +
      kw * site.electricity_cny_per_kwh * (tariff_[a].Between(from_s, to_s) / 3600 - dur_h);
  report_.energy_kwh += kw * dur_h;
  report_.carbon_t += kw * carbon_[a].Between(from_s, to_s) / 3600 * site.carbon_kg_per_kwh *
                      (1 - site.green_share) / 1000.0;
}

void Engine::RemoveRunning(uint32_t j) {
  JobState& st = state_[j];
  size_t slot = static_cast<size_t>(st.slot);
  const uint32_t p = static_cast<uint32_t>(st.pool);
  const int32_t cards = static_cast<int32_t>(jobs_[j].spec.cards);
  free_[p] += cards;
  if (opt_.baseline != Baseline::kNone) loads_[pool_ids_[p]].free_cards += cards;
  Busy(pool_area_[p], -cards);
  if (slot + 1 != running_.size()) {
    running_[slot] = running_.back();
    running_end_s_[slot] = running_end_s_.back();
    state_[running_[slot].id].slot = static_cast<int32_t>(slot);
  }
  running_.pop_back();
  running_end_s_.pop_back();
  st.slot = -1;
  dirty_ = true;
}

void Engine::Finish(uint32_t j) {
  JobState& st = state_[j];
  Meter(j, st.run_start_s, now_);
  RemoveRunning(j);
  st.phase = Phase::kDone;
  st.end_s = now_;
  report_.done++;
  Progress();
}

void Engine::Stop(uint32_t j) {
  JobState& st = state_[j];
  if (st.phase == Phase::kStaging) {
    LinkState& l = links_[st.link];
    l.Advance(now_);
    l.active--;
    st.phase = Phase::kQueued;  // before Reschedule, so the entry reads as stale
    Reschedule(st.link);
  } else {
    // Work done so far is lost, but the cards were used: it is metered.
    Meter(j, st.run_start_s, now_);
    if (now_ > st.run_start_s) {
      report_.lost_card_h +=
          static_cast<double>(jobs_[j].spec.cards) * (now_ - st.run_start_s) / 3600;
    }
  }
  RemoveRunning(j);
  st.phase = Phase::kQueued;
  st.attempt++;
  report_.interrupted++;
  pending_.push_back(j);
}

void Engine::SetSiteDown(uint32_t site, bool down) {
  down_[site] += down ? 1 : -1;
  outages_in_force_ += down ? 1 : -1;
  dirty_ = true;
  bool is_down = down_[site] > 0;
  for (uint32_t p : site_pools_[site]) {
    if (opt_.baseline != Baseline::kNone) loads_[pool_ids_[p]].available = !is_down;
  }
  if (!down) return;
  std::vector<uint32_t> hit;
  for (const sched::RunningJob& r : running_) {
    if (pool_site_ptr_[r.pool] == site_ptr_[site]) hit.push_back(static_cast<uint32_t>(r.id));
  }
  std::sort(hit.begin(), hit.end());  // a deterministic order for the queue
  for (uint32_t j : hit) Stop(j);
}

void Engine::Round() {
  if (pending_.empty()) return;
  report_.rounds++;
  if (opt_.baseline == Baseline::kNone) {
    RoundBatch();
  } else {
    RoundBaseline();
  }
}

void Engine::RoundBatch() {
  const size_t P = pool_.size();
  size_t hour = DailyIntegral::HourOf(now_);
  if (hour != priced_hour_ && topo_.has_diurnal()) {
    // The round sees this hour's prices and carbon intensity.
    for (size_t p = 0; p < P; ++p) {
      const Site& s = *pool_site_ptr_[p];
      double kw = pool_model_[p]->board_power_w / 1000.0 * s.pue;
      double delta = kw * s.electricity_cny_per_kwh * (tariff_[pool_area_[p]].Factor(now_) - 1);
      in_.pools[p].price_cny_per_card_hour =
          static_cast<float>(std::max(0.0, base_price_[p] + delta));
    }
    for (size_t s = 0; s < site_ptr_.size(); ++s) {
      in_.sites[s].carbon_kg_per_kwh =
          static_cast<float>(base_carbon_[s] * carbon_[site_area_[s]].Factor(now_));
    }
  }
  priced_hour_ = hour;
  for (size_t p = 0; p < P; ++p) {
    in_.pools[p].free_cards = down_[in_.pools[p].site] > 0 ? 0 : free_[p];
  }
  in_.jobs.clear();
  std::vector<uint32_t> round;
  round.reserve(pending_.size());
  for (uint32_t j : pending_) {
    sched::BatchJob b = all_jobs_[j];
    b.waited_h = static_cast<float>((now_ - jobs_[j].arrival_s) / 3600);
    if (!std::isinf(b.deadline_h)) {
      b.deadline_h -= b.waited_h;
      if (b.deadline_h <= 0) {
        Drop(j);  // can no longer finish in time
        continue;
      }
    }
    in_.jobs.push_back(b);
    round.push_back(j);
  }
  for (size_t i = 0; i < running_.size(); ++i) {
    running_[i].ends_in_h = static_cast<float>(std::max(0.0, (running_end_s_[i] - now_) / 3600));
  }
  in_.running = running_;
  const sched::PlacementPlan& plan = scheduler_.Schedule(in_);
  pending_.clear();
  for (size_t k = 0; k < round.size(); ++k) {
    const sched::JobPlacement& pl = plan.jobs[k];
    if (pl.outcome == sched::JobOutcome::kPlaced) {
      Start(round[k], static_cast<uint32_t>(pl.pool));
    } else if (pl.outcome == sched::JobOutcome::kInfeasible) {
      Drop(round[k]);
    } else {
      pending_.push_back(round[k]);
    }
  }
}

void Engine::RoundBaseline() {
  std::vector<uint32_t> still;
  for (uint32_t j : pending_) {
    JobSpec spec = jobs_[j].spec;
    spec.policy = Policy::kCheapest;
    const Topology* view = &topo_;
    if (opt_.baseline == Baseline::kLocal) {
      view = &local_view_.at(site_ptr_[static_cast<size_t>(data_site_[j])]->area);
    }
    sched::SchedulerInput in{&catalog_, view, &loads_};
    sched::Decision d = sched::Decide(spec, in);
    if (d.outcome == sched::Outcome::kInfeasible) {
      // While a site is out, a job that only fits there waits for it.
      if (outages_in_force_ > 0) {
        still.push_back(j);
      } else {
        Drop(j);
      }
      continue;
    }
    if (d.ranked.empty()) {
      still.push_back(j);
      continue;
    }
    std::string pick = d.ranked.front().pool_id;
    if (opt_.baseline == Baseline::kRoundRobin) {
      // The first fitting pool at or after the rotating position.
      size_t best = pool_ids_.size();
      for (const auto& o : d.ranked) {
        size_t idx = static_cast<size_t>(std::find(pool_ids_.begin(), pool_ids_.end(), o.pool_id) -
                                         pool_ids_.begin());
        size_t dist = (idx + pool_ids_.size() - rr_next_ % pool_ids_.size()) % pool_ids_.size();
        if (dist < best) {
          best = dist;
          pick = o.pool_id;
        }
      }
      rr_next_ = (rr_next_ + best + 1) % pool_ids_.size();
    }
    uint32_t p = static_cast<uint32_t>(std::find(pool_ids_.begin(), pool_ids_.end(), pick) -
                                       pool_ids_.begin());
    Start(j, p);
  }
  pending_.swap(still);
}

SimReport Engine::Run() {
  Init();
  std::vector<uint32_t> order(jobs_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<uint32_t>(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](uint32_t a, uint32_t b) { return jobs_[a].arrival_s < jobs_[b].arrival_s; });
  size_t next = 0;
  if (opt_.round_s > 0 && !jobs_.empty()) Push(jobs_[order[0]].arrival_s, kRound, 0, 0);
  const double kNever = std::numeric_limits<double>::infinity();
  while (true) {
    double t_event = events_.empty() ? kNever : events_.top().time_s;
    double t_arrival = next < order.size() ? jobs_[order[next]].arrival_s : kNever;
    now_ = std::min(t_event, t_arrival);
    if (now_ == kNever) break;
    bool round_due = false;
    // Everything that happens at this instant, then one round.
    while (!events_.empty() && events_.top().time_s == now_ && events_.top().kind != kRound) {
      Event e = events_.top();
      events_.pop();
      report_.events++;
      switch (e.kind) {
        case kCompletion:
          if (state_[e.a].attempt == e.b && state_[e.a].phase == Phase::kRunning) Finish(e.a);
          break;
        case kTransfer:
          OnTransfer(e.a, e.b);
          break;
        case kOutage: {
          const Outage& o = opt_.outages[e.a];
          const Site* s = topo_.FindSite(o.site_id);
          if (s == nullptr) break;
          uint32_t site = static_cast<uint32_t>(s - topo_.sites().data());
          SetSiteDown(site, true);
          Push(o.start_s + o.duration_s, kRecovery, site, 0);
          break;
        }
        case kRecovery:
          SetSiteDown(e.a, false);
          break;
      }
    }
    while (next < order.size() && jobs_[order[next]].arrival_s == now_) {
      uint32_t j = order[next++];
      report_.events++;
      dirty_ = true;
      if (data_site_[j] < 0) {
        Drop(j);  // its data lives at a site the network does not have
      } else {
        pending_.push_back(j);
      }
    }
    while (!events_.empty() && events_.top().time_s == now_ && events_.top().kind == kRound) {
      events_.pop();
      report_.events++;
      round_due = true;
      bool more = !pending_.empty() || !running_.empty() || next < order.size();
      if (more) Push(now_ + opt_.round_s, kRound, 0, 0);
    }
    if (opt_.round_s <= 0) round_due = true;
    // A round with nothing new since the last one would place nothing new,
    // unless the hour's prices changed.
    bool new_hour = topo_.has_diurnal() && DailyIntegral::HourOf(now_) != priced_hour_;
    if (round_due && (dirty_ || new_hour)) {
      dirty_ = false;
      Round();
    }
    report_.makespan_s = std::max(report_.makespan_s, now_);
  }
  // Statistics.
  for (uint32_t a = 0; a < area_names_.size(); ++a) FlushBusy(a);
  std::vector<double> waits, completions;
  if (opt_.record_waits) report_.wait_s_by_job.assign(jobs_.size(), -1);
  for (size_t j = 0; j < jobs_.size(); ++j) {
    const JobState& st = state_[j];
    if (st.phase != Phase::kDone) continue;
    double wait = st.placed_s - jobs_[j].arrival_s;
    if (opt_.record_waits) report_.wait_s_by_job[j] = wait;
    waits.push_back(wait);
    completions.push_back(st.end_s - jobs_[j].arrival_s);
  }
  auto mean = [](const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return v.empty() ? 0 : s / static_cast<double>(v.size());
  };
  report_.mean_wait_s = mean(waits);
  report_.p50_wait_s = Percentile(waits, 0.5);
  report_.p99_wait_s = Percentile(waits, 0.99);
  report_.mean_completion_s = mean(completions);
  report_.p50_completion_s = Percentile(completions, 0.5);
  report_.p99_completion_s = Percentile(completions, 0.99);
  report_.mean_staging_s = staged_ > 0 ? staging_total_s_ / static_cast<double>(staged_) : 0;
  const double bucket = report_.utilisation_bucket_s;
  const size_t buckets =
      report_.makespan_s > 0 ? static_cast<size_t>(std::ceil(report_.makespan_s / bucket)) : 0;
  // Areas by name, as the report lists them.
  std::vector<uint32_t> by_name(area_names_.size());
  for (uint32_t a = 0; a < by_name.size(); ++a) by_name[a] = a;
  std::sort(by_name.begin(), by_name.end(),
            [&](uint32_t x, uint32_t y) { return area_names_[x] < area_names_[y]; });
  for (uint32_t a : by_name) {
    double busy = 0;
    for (double v : busy_card_s_[a]) busy += v;
    double avail = static_cast<double>(area_cards_[a]) * report_.makespan_s;
    report_.utilisation_by_area.push_back({area_names_[a], avail > 0 ? busy / avail : 0});
    std::vector<double> series(buckets, 0);
    for (size_t b = 0; b < buckets && b < busy_card_s_[a].size(); ++b) {
      double len = std::min(bucket, report_.makespan_s - static_cast<double>(b) * bucket);
      double cap = static_cast<double>(area_cards_[a]) * len;
      series[b] = cap > 0 ? busy_card_s_[a][b] / cap : 0;
    }
    report_.utilisation_over_time.push_back(std::move(series));
  }
  if (opt_.progress) opt_.progress(1.0);
  return std::move(report_);
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

Result<Outage> ParseOutage(std::string_view text, const Topology& topology) {
  std::string t(text);
  auto bad = [&](const std::string& why) {
    return InvalidArgument(
        fmt::format("--outage '{}': {} (expected SITE_ID,START_H,HOURS)", t.substr(0, 200), why));
  };
  size_t c1 = t.find(','), c2 = c1 == std::string::npos ? c1 : t.find(',', c1 + 1);
  if (c2 == std::string::npos || t.find(',', c2 + 1) != std::string::npos) {
    return bad("three comma-separated fields");
  }
  Outage o;
  o.site_id = t.substr(0, c1);
  if (topology.FindSite(o.site_id) == nullptr) {
    return bad("no site '" + o.site_id + "' in the topology");
  }
  auto number = [](const std::string& s, double* out) {
    char* end = nullptr;
    *out = std::strtod(s.c_str(), &end);
    return !s.empty() && *end == '\0' && std::isfinite(*out) && *out >= 0 && *out <= 1e7;
  };
  double start_h = 0, hours = 0;
  if (!number(t.substr(c1 + 1, c2 - c1 - 1), &start_h)) return bad("START_H: hours >= 0");
  if (!number(t.substr(c2 + 1), &hours) || hours <= 0) return bad("HOURS: hours > 0");
  o.start_s = start_h * 3600;
  o.duration_s = hours * 3600;
  return o;
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
  Engine engine(catalog, topology, jobs, options);
  return engine.Run();
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
  out += fmt::format("  data moved        {:.3f} TB (staging mean {:.2f} h, links shared)\n",
                     data_moved_tb, mean_staging_s / 3600);
  if (interrupted > 0) {
    out += fmt::format("  outages           {} runs stopped and queued again, {:.0f} card-h lost\n",
                       interrupted, lost_card_h);
  }
  for (const auto& m : mapped_accelerators) {
    out += fmt::format(
        "  mapped            {} jobs named '{}', not in the catalog: run on any card "
        "by FP16 work ({:g} TFLOPS per card assumed)\n",
        m.jobs, m.name, m.fp16_tflops);
  }
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
  nlohmann::json over_time = nlohmann::json::object();
  for (size_t a = 0; a < utilisation_by_area.size(); ++a) {
    util[utilisation_by_area[a].first] = utilisation_by_area[a].second;
    if (a < utilisation_over_time.size()) {
      nlohmann::json series = nlohmann::json::array();
      // Rounded, so the report stays readable and byte-stable.
      for (double u : utilisation_over_time[a]) series.push_back(std::round(u * 1e4) / 1e4);
      over_time[utilisation_by_area[a].first] = series;
    }
  }
  nlohmann::json mapped = nlohmann::json::array();
  for (const auto& m : mapped_accelerators) {
    mapped.push_back({{"name", m.name}, {"fp16_tflops", m.fp16_tflops}, {"jobs", m.jobs}});
  }
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
      {"mean_staging_s", mean_staging_s},
      {"interrupted", interrupted},
      {"lost_card_h", lost_card_h},
      {"mapped_accelerators", mapped},
      {"residency_violations", residency_violations},
      {"makespan_s", makespan_s},
      {"utilisation_by_area", util},
      {"utilisation_over_time", {{"bucket_s", utilisation_bucket_s}, {"by_area", over_time}}},
      {"events", events},
      {"rounds", rounds}};
  return j.dump(2);
}

}  // namespace cpn::sim
