#include "src/sched/batch.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <queue>

namespace cpn::sched {
namespace {

// card-hours = work_eflop x kCardHoursPerEflop / (peak_tflops x efficiency)
constexpr float kCardHoursPerEflop = 1e6f / 3600.0f;

bool Placed(JobOutcome o) {
  return o == JobOutcome::kPlaced || o == JobOutcome::kPlacedByPreemption;
}

}  // namespace

void BatchScheduler::PoolTable::Build(const BatchInput& in) {
  const size_t P = in.pools.size();
  model.resize(P);
  area.resize(P);
  province.resize(P);
  country.resize(P);
  site.resize(P);
  cards.resize(P);
  available.resize(P);
  for (int c = 0; c < 3; ++c) {
    card_h_per_eflop[c].resize(P);
    cny_per_eflop[c].resize(P);
    kg_per_eflop[c].resize(P);
  }
  for (size_t p = 0; p < P; ++p) {
    const BatchPool& pool = in.pools[p];
    const BatchSite& s = in.sites[pool.site];
    const BatchModel& m = in.models[pool.model];
    model[p] = pool.model;
    area[p] = s.area;
    province[p] = s.province;
    country[p] = s.country;
    site[p] = pool.site;
    cards[p] = pool.cards;
    available[p] = pool.available;
    for (int c = 0; c < 3; ++c) {
      float ch = kCardHoursPerEflop / (m.fp16_tflops * m.efficiency[c]);
      card_h_per_eflop[c][p] = ch;
      cny_per_eflop[c][p] = ch * pool.price_cny_per_card_hour;
      kg_per_eflop[c][p] = ch * m.board_kw * s.pue * s.carbon_kg_per_kwh;
    }
  }
  for (int c = 0; c < 3; ++c) {
    const std::vector<float>* keys[3] = {&cny_per_eflop[c], &card_h_per_eflop[c], &kg_per_eflop[c]};
    for (int k = 0; k < 3; ++k) {
      std::vector<uint32_t>& o = order[c][k];
      o.resize(P);
      for (size_t p = 0; p < P; ++p) o[p] = static_cast<uint32_t>(p);
      const std::vector<float>& key = *keys[k];
      std::sort(o.begin(), o.end(),
                [&](uint32_t a, uint32_t b) { return key[a] != key[b] ? key[a] < key[b] : a < b; });
      std::vector<uint32_t>& bm = by_model[c][k];
      bm = o;
      std::stable_sort(bm.begin(), bm.end(),
                       [&](uint32_t a, uint32_t b) { return model[a] < model[b]; });
    }
  }
  model_begin.assign(in.models.size() + 1, 0);
  for (size_t p = 0; p < P; ++p) model_begin[model[p] + 1u]++;
  for (size_t m = 0; m < in.models.size(); ++m) model_begin[m + 1] += model_begin[m];
}

void BatchScheduler::Evaluate(const BatchInput& in, const PoolTable& t, size_t j, size_t keep,
                              float max_relative_cost, std::vector<Eval>* out) {
  out->clear();
  const BatchJob& job = in.jobs[j];
  const BatchSite& data = in.sites[job.data_site];
  const size_t cls = static_cast<size_t>(job.job_class);
  // Which models fit, decided once per job rather than per pool.
  uint64_t model_ok = 0;
  for (size_t m = 0; m < in.models.size() && m < 64; ++m) {
    const BatchModel& bm = in.models[m];
    bool ok = (job.model < 0 || static_cast<size_t>(job.model) == m) &&
              bm.memory_gb >= job.min_memory_gb &&
              (bm.software_mask & job.software_mask) == job.software_mask;
    if (ok) model_ok |= uint64_t{1} << m;
  }
  const float* ch = t.card_h_per_eflop[cls].data();
  const float* cny = t.cny_per_eflop[cls].data();
  const float* kg = t.kg_per_eflop[cls].data();
  const BatchLink* links = &in.links[size_t{data.area} * in.areas];
  const float work = job.work_fp16_eflop, gb = job.dataset_gb;
  const float inv_cards = 1.0f / static_cast<float>(job.cards);
  const size_t P = t.model.size();

  // Fills `e` and returns true if pool p fits the job.
  auto fit = [&](size_t p, Eval* e) {
    if (!((model_ok >> t.model[p]) & 1) || t.cards[p] < job.cards || !t.available[p]) {
      return false;
    }
    switch (job.residency) {
      case Residency::kAnywhere:
        break;
      case Residency::kCountry:
        if (t.country[p] != data.country) return false;
        break;
      case Residency::kProvince:
        if (t.province[p] != data.province) return false;
        break;
      case Residency::kSite:
        if (t.site[p] != job.data_site) return false;
        break;
    }
    float transfer_cny = 0, transfer_h = 0;
    bool local = t.site[p] == job.data_site;
    for (uint32_t i = job.replicas_begin; !local && i < job.replicas_end; ++i) {
      local = in.replica_sites[i] == t.site[p];
    }
    if (!local && gb > 0) {
      const BatchLink& link = links[t.area[p]];
      transfer_cny = gb * link.cny_per_gb;
      transfer_h = gb * link.hours_per_gb + link.setup_h;
    }
    float run_h = work * ch[p] * inv_cards;
    float cost = work * cny[p] + transfer_cny;
    float time_h = transfer_h + run_h;
    if (time_h > job.deadline_h || cost > job.budget_cny) return false;
    *e = Eval{static_cast<uint32_t>(p), cost, time_h, work * kg[p], run_h};
    return true;
  };

  if (keep == 0) {
    Eval e;
    for (size_t p = 0; p < P; ++p) {
      if (fit(p, &e)) out->push_back(e);
    }
    return;
  }

  // Early termination. Pools are visited in ascending order of a per-EFLOP
  // key that bounds the metric from below (cost >= work x CNY/EFLOP, time >=
  // run time, carbon + 1 = work x kg/EFLOP + 1); the scan stops once the bound
  // exceeds the keep-th best metric seen or max_relative_cost x the best, so
  // the best value and the kept set are exactly those of a full scan.
  // `metric` maps an Eval to the value ranked; `bound` maps a pool to its
  // lower bound. Returns the best Eval found (pool = UINT32_MAX if none).
  float heap[256];
  // A job that names its model visits only that model's pools.
  const size_t first = job.model >= 0 ? t.model_begin[static_cast<size_t>(job.model)] : 0;
  const size_t last = job.model >= 0 ? t.model_begin[static_cast<size_t>(job.model) + 1] : P;
  auto scan = [&](int key, auto bound, auto metric, size_t k, bool collect) {
    const uint32_t* order = job.model >= 0 ? t.by_model[cls][key].data() : t.order[cls][key].data();
    size_t heap_n = 0;
    float best = kNoLimit;
    Eval best_eval{UINT32_MAX, 0, 0, 0, 0};
    Eval e;
    for (size_t i = first; i < last; ++i) {
      const size_t p = order[i];
      float kth = heap_n == k ? heap[0] : kNoLimit;
      if (bound(p) > std::min(kth, best * max_relative_cost)) break;
      if (!fit(p, &e)) continue;
      float m = metric(e);
      // The k-th best only falls, so a pool worse than it now is never kept.
      if (collect && (heap_n < k || m < heap[0])) out->push_back(e);
      if (m < best) {
        best = m;
        best_eval = e;
      }
      if (heap_n < k) {
        heap[heap_n++] = m;
        std::push_heap(heap, heap + heap_n);
      } else if (m < heap[0]) {
        std::pop_heap(heap, heap + heap_n);
        heap[heap_n - 1] = m;
        std::push_heap(heap, heap + heap_n);
      }
    }
    return best_eval;
  };
  keep = std::min<size_t>(keep, 256);
  auto cost_bound = [&](size_t p) { return work * cny[p]; };
  auto time_bound = [&](size_t p) { return work * ch[p] * inv_cards; };
  auto carbon_bound = [&](size_t p) { return work * kg[p] + 1; };
  auto cost_of = [](const Eval& e) { return e.cost; };
  auto time_of = [](const Eval& e) { return e.time_h; };
  auto carbon_of = [](const Eval& e) { return e.carbon_kg + 1; };
  switch (job.policy) {
    case Policy::kCheapest:
      scan(0, cost_bound, cost_of, keep, true);
      return;
    case Policy::kFastest:
      scan(1, time_bound, time_of, keep, true);
      return;
    case Policy::kGreenest:
      scan(2, carbon_bound, carbon_of, keep, true);
      return;
    case Policy::kBalanced:
      break;
  }
  // Balanced: find each metric's best with its own pruned scan, then scan in
  // cost order, where score >= (cost / best cost + 1 + 1) / 3.
  Eval by_cost = scan(0, cost_bound, cost_of, 1, false);
  if (by_cost.pool == UINT32_MAX) return;  // nothing fits
  Eval by_time = scan(1, time_bound, time_of, 1, false);
  Eval by_carbon = scan(2, carbon_bound, carbon_of, 1, false);
  const float min_cost = by_cost.cost, min_time = by_time.time_h,
              min_carbon = by_carbon.carbon_kg + 1;
  auto score = [&](const Eval& e) {
    return (e.cost / min_cost + e.time_h / min_time + (e.carbon_kg + 1) / min_carbon) / 3.0f;
  };
  auto score_bound = [&](size_t p) { return (work * cny[p] / min_cost + 2.0f) / 3.0f; };
  scan(0, score_bound, score, keep, true);
  // Rank() derives the minima from what it is given: make sure they are there.
  for (const Eval& m : {by_time, by_carbon}) {
    bool present = false;
    for (const Eval& e : *out) present = present || e.pool == m.pool;
    if (!present) out->push_back(m);
  }
}

void BatchScheduler::Rank(const BatchJob& job, const BatchOptions& o, std::vector<Eval>& evals,
                          size_t keep, std::vector<Candidate>* out) {
  out->clear();
  if (evals.empty()) return;
  float min_cost = evals[0].cost, min_time = evals[0].time_h, min_carbon = evals[0].carbon_kg;
  for (const Eval& e : evals) {
    min_cost = std::min(min_cost, e.cost);
    min_time = std::min(min_time, e.time_h);
    min_carbon = std::min(min_carbon, e.carbon_kg);
  }
  auto metric = [&](const Eval& e) {
    switch (job.policy) {
      case Policy::kCheapest:
        return e.cost;
      case Policy::kFastest:
        return e.time_h;
      case Policy::kGreenest:
        return e.carbon_kg;
      case Policy::kBalanced:
        return (e.cost / min_cost + e.time_h / min_time + (e.carbon_kg + 1) / (min_carbon + 1)) /
               3.0f;
    }
    return e.cost;
  };
  float best = metric(evals[0]);
  for (const Eval& e : evals) best = std::min(best, metric(e));
  const float limit = RelativeCostLimit(o, job);
  for (const Eval& e : evals) {
    float m = metric(e);
    // Greenest compares carbon + 1 kg so that zero-carbon sites do not divide by zero.
    float r = job.policy == Policy::kGreenest ? (m + 1) / (best + 1) : m / best;
    if (r <= limit) out->push_back({e.pool, r, m, e.run_h});
  }
  auto better = [](const Candidate& a, const Candidate& b) {
    return a.r != b.r ? a.r < b.r : a.pool < b.pool;
  };
  if (keep > 0 && out->size() > keep) {
    std::partial_sort(out->begin(), out->begin() + static_cast<std::ptrdiff_t>(keep), out->end(),
                      better);
  } else {
    std::sort(out->begin(), out->end(), better);
  }
}

std::vector<BatchScheduler::Candidate> BatchScheduler::FeasiblePools(const BatchInput& in,
                                                                     const BatchOptions& o,
                                                                     size_t j) {
  PoolTable t;
  t.Build(in);
  std::vector<Eval> evals;
  std::vector<Candidate> out;
  Evaluate(in, t, j, 0, RelativeCostLimit(o, in.jobs[j]), &evals);
  Rank(in.jobs[j], o, evals, 0, &out);
  return out;
}

float BatchScheduler::RelativeCostLimit(const BatchOptions& o, const BatchJob& job) {
  float relaxed = o.max_relative_cost + o.relax_per_waited_h * std::max(0.0f, job.waited_h);
  return std::max(o.max_relative_cost, std::min(relaxed, o.max_relative_cost_aged));
}

bool BatchScheduler::Allowed(uint32_t pool, const BatchJob& job, float time_h) const {
  if (free_[pool] < job.cards) return false;
  if (std::isinf(res_start_[pool])) return true;
  if (!options_.backfill) return false;
  // Backfill: done before the reservation starts, or fits beside it.
  return time_h <= res_start_[pool] || job.cards <= res_spare_[pool];
}

void BatchScheduler::Take(uint32_t pool, const BatchJob& job, float time_h) {
  if (!std::isinf(res_start_[pool]) && time_h > res_start_[pool]) res_spare_[pool] -= job.cards;
}

void BatchScheduler::Place(size_t j, const Candidate& c, const BatchJob& job, JobOutcome outcome) {
  Take(c.pool, job, c.run_h);
  free_[c.pool] -= job.cards;
  JobPlacement& pl = plan_.jobs[j];
  pl.pool = static_cast<int32_t>(c.pool);
  pl.relative_cost = c.r;
  pl.metric = c.metric;
  pl.outcome = outcome;
  where_[j] = static_cast<int32_t>(c.pool);
  releases_.push_back({c.pool, c.run_h, job.cards});
}

void BatchScheduler::IndexReleases() {
  {
    // Counting sort of the running jobs' releases by pool, then by end time.
    const size_t P = free_.size();
    release_begin_.assign(P + 1, 0);
    for (size_t r = 0; r < running_releases_; ++r) release_begin_[releases_[r].pool + 1]++;
    for (size_t p = 0; p < P; ++p) release_begin_[p + 1] += release_begin_[p];
    release_order_.resize(running_releases_);
    std::vector<uint32_t> next(release_begin_.begin(), release_begin_.end() - 1);
    for (size_t r = 0; r < running_releases_; ++r) {
      release_order_[next[releases_[r].pool]++] = static_cast<uint32_t>(r);
    }
    for (size_t p = 0; p < P; ++p) {
      std::sort(release_order_.begin() + release_begin_[p],
                release_order_.begin() + release_begin_[p + 1], [&](uint32_t a, uint32_t b) {
                  return releases_[a].end_h != releases_[b].end_h
                             ? releases_[a].end_h < releases_[b].end_h
                             : a < b;
                });
    }
    releases_indexed_ = true;
  }
}

float BatchScheduler::StartTime(uint32_t pool, int32_t cards, int32_t* spare) {
  if (!releases_indexed_) IndexReleases();
  // This round's placements on the pool (few), merged with the running ones.
  ends_.clear();
  for (size_t r = running_releases_; r < releases_.size(); ++r) {
    if (releases_[r].pool == pool && releases_[r].cards > 0) {
      ends_.push_back({releases_[r].end_h, releases_[r].cards});
    }
  }
  std::sort(ends_.begin(), ends_.end());
  int32_t free = free_[pool];
  float t = 0;
  size_t a = release_begin_[pool], a_end = release_begin_[pool + 1], b = 0;
  while (free < cards && (a < a_end || b < ends_.size())) {
    const Release* ra = a < a_end ? &releases_[release_order_[a]] : nullptr;
    if (ra != nullptr && (b >= ends_.size() || ra->end_h <= ends_[b].first)) {
      ++a;
      if (ra->cards <= 0) continue;  // preempted this round
      free += ra->cards;
      t = ra->end_h;
    } else {
      free += ends_[b].second;
      t = ends_[b].first;
      ++b;
    }
  }
  *spare = std::max(0, free - cards);
  return free >= cards ? t : kNoLimit;
}

const PlacementPlan& BatchScheduler::Schedule(const BatchInput& in) {
  const size_t J = in.jobs.size(), P = in.pools.size();
  const size_t K = static_cast<size_t>(std::clamp(options_.candidates, 1, 255));
  const float U = options_.unplaced_penalty;
  plan_.jobs.assign(J, JobPlacement{});
  plan_.preempt.clear();
  plan_.objective = 0;
  plan_.placed = plan_.reserved = plan_.infeasible = 0;
  cand_.resize(J * K);
  ncand_.assign(J, 0);
  regret_.assign(J, 0);
  where_.assign(J, -1);
  free_.resize(P);
  res_start_.assign(P, kNoLimit);
  res_spare_.assign(P, 0);
  for (size_t p = 0; p < P; ++p) free_[p] = in.pools[p].available ? in.pools[p].free_cards : 0;
  releases_.clear();
  for (const RunningJob& r : in.running) releases_.push_back({r.pool, r.ends_in_h, r.cards});
  running_releases_ = releases_.size();
  releases_indexed_ = false;
  preempted_.assign(in.running.size(), 0);
  table_.Build(in);

  // 1. Each job's K best pools, ignoring load.
  for (size_t j = 0; j < J; ++j) {
    Evaluate(in, table_, j, K, RelativeCostLimit(options_, in.jobs[j]), &evals_);
    Rank(in.jobs[j], options_, evals_, K, &ranked_);
    size_t n = std::min(K, ranked_.size());
    std::copy(ranked_.begin(), ranked_.begin() + static_cast<std::ptrdiff_t>(n),
              cand_.begin() + static_cast<std::ptrdiff_t>(j * K));
    ncand_[j] = static_cast<uint8_t>(n);
    if (n == 0) {
      plan_.jobs[j].outcome = JobOutcome::kInfeasible;
      plan_.infeasible++;
      continue;
    }
    plan_.jobs[j].runner_up = n >= 2 ? static_cast<int32_t>(ranked_[1].pool) : -1;
    plan_.jobs[j].outcome = JobOutcome::kWaiting;
  }

  // 2. Price scarce pools: subgradient steps on the Lagrangian of the capacity
  // constraints. A job's adjusted cost on pool p is r + cards x price[p]; pools
  // that too many jobs want get dearer, steering flexible jobs elsewhere.
  price_.assign(P, 0);
  load_.assign(P, 0);
  auto best_adjusted = [&](size_t j, float* second) {
    const Candidate* c = &cand_[j * K];
    float card_n = static_cast<float>(in.jobs[j].cards);
    int best = -1;
    float b1 = U, b2 = U;
    for (size_t i = 0; i < ncand_[j]; ++i) {
      float a = c[i].r + card_n * price_[c[i].pool];
      if (a < b1) {
        b2 = b1;
        b1 = a;
        best = static_cast<int>(i);
      } else if (a < b2) {
        b2 = a;
      }
    }
    if (second) *second = b2;
    return best;
  };
  // Busier networks need prices to move faster: scale the step by how much
  // of the free capacity this round's jobs ask for (1x up to a third).
  double demand = 0, capacity = 0;
  for (size_t j = 0; j < J; ++j) {
    if (ncand_[j] > 0) demand += in.jobs[j].cards;
  }
  for (size_t p = 0; p < P; ++p) capacity += std::max(0, free_[p]);
  const double load = capacity > 0 ? demand / capacity : 1.0;
  const float step_scale = static_cast<float>(std::pow(std::max(1.0, 3.0 * load), 1.5));
  for (int it = 0; it < options_.price_iterations; ++it) {
    std::fill(load_.begin(), load_.end(), 0);
    for (size_t j = 0; j < J; ++j) {
      if (ncand_[j] == 0) continue;
      int b = best_adjusted(j, nullptr);
      if (b >= 0) load_[cand_[j * K + static_cast<size_t>(b)].pool] += in.jobs[j].cards;
    }
    // Step size shrinks over the rounds; prices are per card, on the scale of
    // r (about 1) divided by a typical gang.
    float step = options_.price_step * step_scale / static_cast<float>(it + 1);
    for (size_t p = 0; p < P; ++p) {
      float cap = static_cast<float>(std::max(1, free_[p]));
      float g = (static_cast<float>(load_[p]) - cap) / cap;
      price_[p] = std::max(0.0f, price_[p] + step * g);
    }
  }
  for (size_t j = 0; j < J; ++j) {
    if (ncand_[j] == 0) continue;
    float second = U;
    int b = best_adjusted(j, &second);
    float first = b >= 0 ? cand_[j * K + static_cast<size_t>(b)].r +
                               static_cast<float>(in.jobs[j].cards) *
                                   price_[cand_[j * K + static_cast<size_t>(b)].pool]
                         : U;
    regret_[j] = second - first;
  }

  // 3. Order: priority, then tenant (for the fair-share merge), then regret.
  order_.clear();
  for (size_t j = 0; j < J; ++j) {
    if (ncand_[j] > 0) order_.push_back(static_cast<uint32_t>(j));
  }
  std::sort(order_.begin(), order_.end(), [&](uint32_t a, uint32_t b) {
    const BatchJob &ja = in.jobs[a], &jb = in.jobs[b];
    if (ja.priority != jb.priority) return ja.priority > jb.priority;
    if (ja.tenant != jb.tenant) return ja.tenant < jb.tenant;
    if (regret_[a] != regret_[b]) return regret_[a] > regret_[b];
    if (ja.waited_h != jb.waited_h) return ja.waited_h > jb.waited_h;
    return a < b;
  });
  size_t tenants = std::max(in.tenant_weight.size(), in.tenant_usage.size());
  for (const BatchJob& job : in.jobs) tenants = std::max<size_t>(tenants, job.tenant + 1u);
  tenant_given_.assign(tenants, 0);
  auto share = [&](uint16_t t) {
    float w = t < in.tenant_weight.size() && in.tenant_weight[t] > 0 ? in.tenant_weight[t] : 1.0f;
    float u = t < in.tenant_usage.size() ? in.tenant_usage[t] : 0.0f;
    return (u + tenant_given_[t]) / w;
  };

  // Reservations first, so this round's other jobs already respect them: in
  // order of priority and then age, a job that no candidate has room for now
  // reserves the candidate pool that frees enough cards first (one per pool).
  int reservations = 0;
  auto reserve = [&](size_t j) {
    const BatchJob& job = in.jobs[j];
    const Candidate* cands = &cand_[j * K];
    float best_start = kNoLimit;
    int32_t best_spare = 0;
    const Candidate* best = nullptr;
    for (size_t i = 0; i < ncand_[j]; ++i) {
      uint32_t p = cands[i].pool;
      if (!std::isinf(res_start_[p])) continue;
      int32_t spare = 0;
      float start = StartTime(p, job.cards, &spare);
      if (start < best_start) {
        best_start = start;
        best_spare = spare;
        best = &cands[i];
      }
    }
    if (best == nullptr) return;
    res_start_[best->pool] = best_start;
    res_spare_[best->pool] = best_spare;
    JobPlacement& pl = plan_.jobs[j];
    pl.pool = static_cast<int32_t>(best->pool);
    pl.relative_cost = best->r;
    pl.metric = best->metric;
    pl.start_in_h = best_start;
    pl.outcome = JobOutcome::kReserved;
    plan_.reserved++;
    reservations++;
  };
  // A job with no room now: preempt lower-priority preemptible jobs if that
  // frees enough cards in one of its pools, else reserve one.
  auto settle = [&](size_t j) {
    const BatchJob& job = in.jobs[j];
    const Candidate* cands = &cand_[j * K];
    if (options_.preemption) {
      for (size_t i = 0; i < ncand_[j]; ++i) {
        uint32_t p = cands[i].pool;
        if (!std::isinf(res_start_[p])) continue;
        std::vector<size_t> victims;
        int32_t reclaimable = 0;
        if (!releases_indexed_) IndexReleases();
        for (uint32_t k = release_begin_[p]; k < release_begin_[p + 1]; ++k) {
          const size_t r = release_order_[k];
          const RunningJob& rj = in.running[r];
          if (rj.pool == p && rj.preemptible && rj.priority < job.priority && !preempted_[r]) {
            victims.push_back(r);
            reclaimable += rj.cards;
          }
        }
        if (free_[p] + reclaimable < job.cards) continue;
        std::sort(victims.begin(), victims.end(), [&](size_t a, size_t b) {
          const RunningJob &x = in.running[a], &y = in.running[b];
          if (x.priority != y.priority) return x.priority < y.priority;
          if (x.cards != y.cards) return x.cards > y.cards;
          return x.id < y.id;
        });
        for (size_t v : victims) {
          if (free_[p] >= job.cards) break;
          preempted_[v] = 1;
          free_[p] += in.running[v].cards;
          plan_.preempt.push_back(in.running[v].id);
          releases_[v].cards = 0;  // running jobs come first in releases_
        }
        Place(j, cands[i], job, JobOutcome::kPlacedByPreemption);
        return;
      }
    }
    if (reservations < options_.max_reservations) reserve(j);
  };

  std::vector<size_t> blocked;
  auto process = [&](uint32_t j) {
    const BatchJob& job = in.jobs[j];
    if (plan_.jobs[j].outcome != JobOutcome::kWaiting || where_[j] >= 0) return;  // done early
    const Candidate* cands = &cand_[j * K];
    const Candidate* chosen = nullptr;
    float chosen_adj = U;
    // The best candidate by adjusted cost among those with room.
    for (size_t i = 0; i < ncand_[j]; ++i) {
      float adj = cands[i].r + static_cast<float>(job.cards) * price_[cands[i].pool];
      if ((chosen == nullptr || adj < chosen_adj) && Allowed(cands[i].pool, job, cands[i].run_h)) {
        chosen = &cands[i];
        chosen_adj = adj;
      }
    }
    if (chosen == nullptr && ncand_[j] == K) {
      // Past the K kept candidates: look `fallback_depth` deep (every pool if
      // 0, and always once the job has waited an hour, so no fitting job waits
      // forever).
      size_t deeper = job.waited_h >= 1.0f ? 0 : static_cast<size_t>(options_.fallback_depth);
      Evaluate(in, table_, j, deeper, RelativeCostLimit(options_, job), &evals_);
      Rank(job, options_, evals_, deeper, &ranked_);
      size_t limit = deeper == 0 ? ranked_.size() : std::min(deeper, ranked_.size());
      for (size_t i = K; i < limit && chosen == nullptr; ++i) {
        if (Allowed(ranked_[i].pool, job, ranked_[i].run_h)) chosen = &ranked_[i];
      }
    }
    if (chosen != nullptr) {
      Place(j, *chosen, job, JobOutcome::kPlaced);
      const BatchModel& m = in.models[in.pools[chosen->pool].model];
      tenant_given_[job.tenant] +=
          static_cast<float>(job.cards) * m.fp16_tflops / 1000.0f * chosen->run_h;
      return;
    }
    blocked.push_back(j);
  };

  // Jobs that have waited `reserve_after_h` go first, oldest first within a
  // priority, and settle (preempt or reserve) at once if there is no room: so
  // the round's other jobs already respect their reservations.
  {
    std::vector<uint32_t> aged;
    for (uint32_t j : order_) {
      if (in.jobs[j].waited_h >= options_.reserve_after_h) aged.push_back(j);
    }
    std::stable_sort(aged.begin(), aged.end(), [&](uint32_t a, uint32_t b) {
      const BatchJob &ja = in.jobs[a], &jb = in.jobs[b];
      if (ja.priority != jb.priority) return ja.priority > jb.priority;
      return ja.waited_h > jb.waited_h;
    });
    for (uint32_t j : aged) {
      process(j);
      if (!blocked.empty() && blocked.back() == j) {
        blocked.pop_back();
        settle(j);
      }
    }
  }

  // Within each priority level, serve tenants by lowest weighted share first.
  size_t pos = 0;
  while (pos < order_.size()) {
    int16_t level = in.jobs[order_[pos]].priority;
    size_t level_end = pos;
    while (level_end < order_.size() && in.jobs[order_[level_end]].priority == level) ++level_end;
    struct Run {
      size_t next, end;
      uint16_t tenant;
    };
    std::vector<Run> runs;
    for (size_t i = pos; i < level_end;) {
      size_t k = i;
      uint16_t t = in.jobs[order_[i]].tenant;
      while (k < level_end && in.jobs[order_[k]].tenant == t) ++k;
      runs.push_back({i, k, t});
      i = k;
    }
    if (runs.size() == 1) {
      for (size_t i = pos; i < level_end; ++i) process(order_[i]);
    } else {
      auto later = [&](size_t a, size_t b) {
        float sa = share(runs[a].tenant), sb = share(runs[b].tenant);
        return sa != sb ? sa > sb : runs[a].tenant > runs[b].tenant;
      };
      std::priority_queue<size_t, std::vector<size_t>, decltype(later)> heap(later);
      for (size_t r = 0; r < runs.size(); ++r) heap.push(r);
      while (!heap.empty()) {
        size_t r = heap.top();
        heap.pop();
        process(order_[runs[r].next++]);
        if (runs[r].next < runs[r].end) heap.push(r);
      }
    }
    pos = level_end;
  }

  // 4. Repair: a blocked job may take a pool if one job already there can move
  // to another of its candidates with room, when that lowers the objective.
  if (!blocked.empty()) {
    pool_jobs_begin_.assign(P + 1, 0);
    for (size_t j = 0; j < J; ++j) {
      if (where_[j] >= 0) pool_jobs_begin_[static_cast<size_t>(where_[j]) + 1]++;
    }
    for (size_t p = 0; p < P; ++p) pool_jobs_begin_[p + 1] += pool_jobs_begin_[p];
    pool_jobs_.assign(pool_jobs_begin_[P], 0);
    std::vector<uint32_t> fill(pool_jobs_begin_.begin(), pool_jobs_begin_.end() - 1);
    for (size_t j = 0; j < J; ++j) {
      if (where_[j] >= 0)
        pool_jobs_[fill[static_cast<size_t>(where_[j])]++] = static_cast<uint32_t>(j);
    }
    std::vector<size_t> still_blocked;
    struct Move {
      uint32_t job, to;
      float delta;  // change in the mover's r
      const Candidate* cand;
    };
    std::vector<Move> moves;
    std::vector<std::pair<uint32_t, int32_t>> taken;  // tentative use of other pools
    // Work is capped at a few steps per job in the round, so a round where
    // much is blocked stays linear; jobs past the budget wait for the next.
    int64_t budget = 16 * static_cast<int64_t>(J) + 200'000;
    for (size_t j : blocked) {
      const BatchJob& job = in.jobs[j];
      const Candidate* cands = &cand_[j * K];
      bool done = false;
      for (size_t i = 0; i < ncand_[j] && !done && budget > 0; ++i) {
        uint32_t p = cands[i].pool;
        if (!std::isinf(res_start_[p])) continue;
        int32_t need = job.cards - free_[p];
        if (need <= 0) continue;
        // Each job in p: its cheapest move to another candidate with room.
        moves.clear();
        for (uint32_t k = pool_jobs_begin_[p]; k < pool_jobs_begin_[p + 1]; ++k) {
          uint32_t o = pool_jobs_[k];
          if (where_[o] != static_cast<int32_t>(p) ||
              plan_.jobs[o].outcome != JobOutcome::kPlaced) {
            continue;
          }
          const Candidate* oc = &cand_[size_t{o} * K];
          budget -= ncand_[o];
          for (size_t m = 0; m < ncand_[o]; ++m) {
            uint32_t q = oc[m].pool;
            if (q == p || free_[q] < in.jobs[o].cards || !std::isinf(res_start_[q])) continue;
            moves.push_back({o, q, oc[m].r - plan_.jobs[o].relative_cost, &oc[m]});
            break;  // candidates are best first
          }
        }
        // Cheapest per card first, until enough cards are free.
        std::sort(moves.begin(), moves.end(), [&](const Move& a, const Move& b) {
          float ka = a.delta / static_cast<float>(in.jobs[a.job].cards);
          float kb = b.delta / static_cast<float>(in.jobs[b.job].cards);
          return ka != kb ? ka < kb : a.job < b.job;
        });
        taken.clear();
        int32_t freed = 0;
        float cost = 0;
        size_t used = 0;
        for (; used < moves.size() && freed < need; ++used) {
          const Move& mv = moves[used];
          int32_t already = 0;
          for (const auto& [q, n] : taken) {
            if (q == mv.to) already += n;
          }
          if (free_[mv.to] - already < in.jobs[mv.job].cards) {
            moves[used].to = UINT32_MAX;  // no room left there after earlier moves
            continue;
          }
          taken.push_back({mv.to, in.jobs[mv.job].cards});
          freed += in.jobs[mv.job].cards;
          cost += mv.delta;
        }
        if (freed < need || cost >= U - cands[i].r) continue;
        for (size_t m = 0; m < used; ++m) {
          const Move& mv = moves[m];
          if (mv.to == UINT32_MAX) continue;
          free_[p] += in.jobs[mv.job].cards;
          free_[mv.to] -= in.jobs[mv.job].cards;
          where_[mv.job] = static_cast<int32_t>(mv.to);
          plan_.jobs[mv.job].pool = static_cast<int32_t>(mv.to);
          plan_.jobs[mv.job].relative_cost = mv.cand->r;
          plan_.jobs[mv.job].metric = mv.cand->metric;
        }
        Place(j, cands[i], job, JobOutcome::kPlaced);
        done = true;
      }
      if (!done) still_blocked.push_back(j);
    }
    blocked.swap(still_blocked);
  }

  // 5. Improve: prices can overshoot, so move placed jobs to better candidates
  // that still have room.
  for (int pass = 0; pass < 3; ++pass) {
    bool moved = false;
    for (uint32_t j : order_) {
      if (plan_.jobs[j].outcome != JobOutcome::kPlaced) continue;
      const Candidate* cands = &cand_[size_t{j} * K];
      const int32_t cards = in.jobs[j].cards;
      for (size_t i = 0; i < ncand_[j]; ++i) {
        uint32_t q = cands[i].pool;
        if (cands[i].r >= plan_.jobs[j].relative_cost) break;
        if (free_[q] < cards || !std::isinf(res_start_[q])) continue;
        uint32_t p = static_cast<uint32_t>(where_[j]);
        free_[p] += cards;
        free_[q] -= cards;
        where_[j] = static_cast<int32_t>(q);
        plan_.jobs[j].pool = static_cast<int32_t>(q);
        plan_.jobs[j].relative_cost = cands[i].r;
        plan_.jobs[j].metric = cands[i].metric;
        moved = true;
        break;
      }
    }
    if (!moved) break;
  }

  // 6. Still blocked: preempt lower-priority preemptible jobs, else reserve.
  for (size_t j : blocked) settle(j);

  // 7. The objective of what was decided.
  for (size_t j = 0; j < J; ++j) {
    if (ncand_[j] == 0) continue;
    if (Placed(plan_.jobs[j].outcome)) {
      plan_.placed++;
      plan_.objective += plan_.jobs[j].relative_cost;
    } else {
      plan_.objective += U;
    }
  }
  return plan_;
}

size_t BatchScheduler::WorkingSetBytes() const {
  size_t table = 0;
  for (int c = 0; c < 3; ++c) {
    table += (table_.card_h_per_eflop[c].capacity() + table_.cny_per_eflop[c].capacity() +
              table_.kg_per_eflop[c].capacity()) *
             sizeof(float);
  }
  table += table_.model.capacity() * 8 + table_.site.capacity() * 4 + table_.cards.capacity() * 4 +
           table_.available.capacity();
  return plan_.jobs.capacity() * sizeof(JobPlacement) + cand_.capacity() * sizeof(Candidate) +
         ncand_.capacity() + regret_.capacity() * sizeof(float) +
         order_.capacity() * sizeof(uint32_t) + free_.capacity() * sizeof(int32_t) +
         res_start_.capacity() * sizeof(float) + res_spare_.capacity() * sizeof(int32_t) +
         evals_.capacity() * sizeof(Eval) + ranked_.capacity() * sizeof(Candidate) +
         releases_.capacity() * sizeof(Release) + preempted_.capacity() +
         tenant_given_.capacity() * sizeof(float) + plan_.preempt.capacity() * sizeof(uint64_t) +
         price_.capacity() * sizeof(float) + load_.capacity() * sizeof(int64_t) +
         where_.capacity() * sizeof(int32_t) + pool_jobs_.capacity() * 4 +
         pool_jobs_begin_.capacity() * 4 + table;
}

}  // namespace cpn::sched
