#include "src/sched/batch_input.h"

#include <algorithm>

namespace cpn::sched {
namespace {

template <typename T>
uint16_t Intern(std::map<T, uint16_t>& table, const T& key) {
  auto it = table.find(key);
  if (it != table.end()) return it->second;
  uint16_t id = static_cast<uint16_t>(table.size());
  table.emplace(key, id);
  return id;
}

}  // namespace

BatchView MakeBatchInput(const Catalog& catalog, const Topology& topology,
                         const std::map<std::string, PoolLoad>& loads,
                         const std::vector<PendingJob>& jobs,
                         const std::vector<RunningJobInfo>& running) {
  BatchView view;
  BatchInput& in = view.input;
  std::map<std::string, uint16_t> areas, provinces, countries, software, tenants;
  // Software names: bit i of a mask.
  for (const auto& m : catalog.models()) {
    for (const auto& s : m.software) Intern(software, s);
  }
  for (const auto& m : catalog.models()) {
    BatchModel bm;
    bm.fp16_tflops = static_cast<float>(m.fp16_equivalent_tflops());
    bm.memory_gb = static_cast<float>(m.memory_gb);
    bm.board_kw = static_cast<float>(m.board_power_w / 1000.0);
    for (const auto& s : m.software) bm.software_mask |= 1u << (software[s] % 32);
    bm.efficiency[0] = static_cast<float>(m.efficiency(JobClass::kTraining));
    bm.efficiency[1] = static_cast<float>(m.efficiency(JobClass::kInference));
    bm.efficiency[2] = static_cast<float>(m.efficiency(JobClass::kBatch));
    in.models.push_back(bm);
  }
  std::map<std::string, uint32_t> site_index, pool_index;
  std::vector<std::string> area_names;
  for (const Site& s : topology.sites()) {
    BatchSite bs;
    size_t before = areas.size();
    bs.area = Intern(areas, s.area);
    if (areas.size() > before) area_names.push_back(s.area);
    bs.province = Intern(provinces, s.jurisdiction);
    bs.country = Intern(countries, s.country());
    bs.pue = static_cast<float>(s.pue);
    bs.carbon_kg_per_kwh = static_cast<float>(s.carbon_kg_per_kwh * (1.0 - s.green_share));
    site_index[s.id] = static_cast<uint32_t>(in.sites.size());
    in.sites.push_back(bs);
    for (const Pool& p : s.pools) {
      const AcceleratorModel* m = catalog.Find(p.accelerator);
      if (m == nullptr) continue;
      BatchPool bp;
      bp.site = site_index[s.id];
      bp.model = static_cast<uint16_t>(m - catalog.models().data());
      bp.cards = static_cast<int32_t>(p.cards);
      bp.free_cards = bp.cards;
      auto it = loads.find(p.id);
      if (it != loads.end()) {
        bp.free_cards = static_cast<int32_t>(it->second.free_cards);
        bp.available = it->second.available;
      }
      bp.price_cny_per_card_hour = static_cast<float>(p.price_cny_per_card_hour);
      pool_index[p.id] = static_cast<uint32_t>(in.pools.size());
      view.pool_ids.push_back(p.id);
      in.pools.push_back(bp);
    }
  }
  in.areas = static_cast<uint16_t>(std::max<size_t>(1, areas.size()));
  in.links.assign(size_t{in.areas} * in.areas, BatchLink{});
  for (size_t a = 0; a < area_names.size(); ++a) {
    for (size_t b = 0; b < area_names.size(); ++b) {
      const Link& l = topology.LinkBetween(area_names[a], area_names[b]);
      BatchLink& bl = in.links[a * in.areas + b];
      bl.cny_per_gb = static_cast<float>(l.cny_per_gb);
      bl.hours_per_gb = static_cast<float>(8.0 / (l.bandwidth_gbps * 3600.0));
      bl.setup_h = static_cast<float>(3 * l.rtt_ms / 3.6e6);
    }
  }
  for (const PendingJob& pj : jobs) {
    const JobSpec& s = *pj.spec;
    BatchJob bj;
    size_t before = tenants.size();
    bj.tenant = Intern(tenants, s.tenant);
    if (tenants.size() > before) view.tenants.push_back(s.tenant);
    bj.priority = static_cast<int16_t>(s.priority);
    bj.job_class = s.job_class;
    bj.policy = s.policy;
    bj.residency = s.residency;
    bj.preemptible = pj.preemptible;
    bj.cards = static_cast<int32_t>(s.cards);
    bj.model = -1;
    if (!s.accelerator.empty()) {
      const AcceleratorModel* m = catalog.Find(s.accelerator);
      bj.model = m ? static_cast<int32_t>(m - catalog.models().data()) : -2;
    }
    bj.min_memory_gb = static_cast<float>(s.min_memory_gb);
    for (const auto& sw : s.software) {
      auto it = software.find(sw);
      // Software no accelerator runs: a bit no model has, so nothing fits.
      bj.software_mask |= it == software.end() ? (1u << 31) : 1u << (it->second % 32);
    }
    bj.work_fp16_eflop = static_cast<float>(s.work_fp16_eflop);
    bj.dataset_gb = static_cast<float>(s.dataset_gb);
    auto site = site_index.find(s.dataset_site);
    bj.data_site = site == site_index.end() ? 0 : site->second;
    if (site == site_index.end()) bj.model = -2;  // unknown data location: fits nowhere
    bj.replicas_begin = static_cast<uint32_t>(in.replica_sites.size());
    for (const auto& r : s.dataset_replicas) {
      auto it = site_index.find(r);
      if (it != site_index.end()) in.replica_sites.push_back(it->second);
    }
    bj.replicas_end = static_cast<uint32_t>(in.replica_sites.size());
    bj.deadline_h = s.deadline_h ? static_cast<float>(*s.deadline_h) : kNoLimit;
    bj.budget_cny = s.budget_cny ? static_cast<float>(*s.budget_cny) : kNoLimit;
    bj.waited_h = static_cast<float>(pj.waited_h);
    in.jobs.push_back(bj);
  }
  for (const RunningJobInfo& r : running) {
    auto it = pool_index.find(r.pool_id);
    if (it == pool_index.end()) continue;
    RunningJob rj;
    rj.id = r.id;
    rj.pool = it->second;
    rj.cards = static_cast<int32_t>(r.cards);
    rj.ends_in_h = static_cast<float>(r.ends_in_h);
    rj.priority = static_cast<int16_t>(r.priority);
    rj.preemptible = r.preemptible;
    size_t before = tenants.size();
    rj.tenant = Intern(tenants, r.tenant);
    if (tenants.size() > before) view.tenants.push_back(r.tenant);
    in.running.push_back(rj);
  }
  in.tenant_weight.assign(tenants.size(), 1.0f);
  in.tenant_usage.assign(tenants.size(), 0.0f);
  return view;
}

}  // namespace cpn::sched
