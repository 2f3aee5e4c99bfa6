#include "src/testing/batch_instances.h"

#include <algorithm>
#include <cmath>
#include <random>

namespace cpn::testing {

sched::BatchInput MakeInstance(const InstanceShape& shape) {
  std::mt19937_64 rng(shape.seed);
  auto uniform = [&](double a, double b) {
    return std::uniform_real_distribution<double>(a, b)(rng);
  };
  auto pick = [&](int64_t n) { return std::uniform_int_distribution<int64_t>(0, n - 1)(rng); };
  sched::BatchInput in;
  // Six models: fp16 TFLOPS, memory GB, board kW, software (bit 0 cuda, 1 cann, 2 pytorch,
  // 3 neuware), base price CNY/card-h.
  struct M {
    float tflops, mem, kw;
    uint32_t sw;
    float price;
  };
  const M models[] = {{989, 80, 0.7f, 0b101, 16},    {312, 80, 0.4f, 0b101, 8},
                      {148, 96, 0.4f, 0b101, 5},     {320, 64, 0.4f, 0b110, 4.5f},
                      {96, 48, 0.25f, 0b1100, 2.5f}, {362, 48, 0.35f, 0b101, 6}};
  for (const M& m : models) {
    sched::BatchModel bm;
    bm.fp16_tflops = m.tflops;
    bm.memory_gb = m.mem;
    bm.board_kw = m.kw;
    bm.software_mask = m.sw;
    bm.efficiency[0] = static_cast<float>(uniform(0.3, 0.45));
    bm.efficiency[1] = static_cast<float>(uniform(0.25, 0.4));
    bm.efficiency[2] = static_cast<float>(uniform(0.4, 0.55));
    in.models.push_back(bm);
  }
  in.areas = static_cast<uint16_t>(shape.areas);
  in.links.resize(size_t{in.areas} * in.areas);
  for (int a = 0; a < shape.areas; ++a) {
    for (int b = a; b < shape.areas; ++b) {
      sched::BatchLink l;
      if (a != b) {
        double gbps = uniform(5, 40);
        l.cny_per_gb = static_cast<float>(uniform(0.03, 0.1));
        l.hours_per_gb = static_cast<float>(8.0 / (gbps * 3600));
        l.setup_h = static_cast<float>(3 * uniform(10, 30) / 3.6e6);
      }
      in.links[size_t(a) * in.areas + b] = l;
      in.links[size_t(b) * in.areas + a] = l;
    }
  }
  for (int64_t s = 0; s < shape.sites; ++s) {
    sched::BatchSite site;
    site.area = static_cast<uint16_t>(s % shape.areas);
    site.province = static_cast<uint16_t>(s % (shape.areas * 2));
    site.country = 0;
    site.pue = static_cast<float>(uniform(1.1, 1.45));
    site.carbon_kg_per_kwh = static_cast<float>(uniform(0.05, 0.7));
    in.sites.push_back(site);
  }
  // Jobs first (to size capacity to demand).
  int64_t demand = 0;
  const int32_t gangs[] = {1, 2, 4, 8, 8, 16, 32, 64};
  for (int64_t j = 0; j < shape.jobs; ++j) {
    sched::BatchJob job;
    job.tenant = static_cast<uint16_t>(pick(shape.tenants));
    job.cards = gangs[pick(8)];
    job.job_class = static_cast<JobClass>(pick(3));
    job.policy = static_cast<Policy>(pick(4));
    double kind = uniform(0, 1);
    if (kind < 0.5) {
      job.model = static_cast<int32_t>(pick(6));
    } else if (kind < 0.8) {
      job.software_mask = 0b001;  // cuda
      job.min_memory_gb = 48;
    } else {
      job.software_mask = 0b100;  // pytorch
    }
    job.work_fp16_eflop = static_cast<float>(std::exp(uniform(std::log(1.0), std::log(2000.0))));
    job.dataset_gb = static_cast<float>(uniform(0, 2000));
    job.data_site = static_cast<uint32_t>(pick(shape.sites));
    double res = uniform(0, 1);
    job.residency = res < 0.6    ? Residency::kAnywhere
                    : res < 0.9  ? Residency::kCountry
                    : res < 0.97 ? Residency::kProvince
                                 : Residency::kSite;
    if (uniform(0, 1) < 0.3) job.deadline_h = static_cast<float>(uniform(24, 400));
    demand += job.cards;
    in.jobs.push_back(job);
  }
  int64_t total_pools = shape.sites * shape.pools_per_site;
  double mean_pool =
      shape.capacity_over_demand * static_cast<double>(demand) / static_cast<double>(total_pools);
  for (int64_t s = 0; s < shape.sites; ++s) {
    int64_t first = pick(6);
    for (int64_t k = 0; k < shape.pools_per_site; ++k) {
      sched::BatchPool p;
      p.site = static_cast<uint32_t>(s);
      p.model = static_cast<uint16_t>((first + k) % 6);
      p.cards = std::max<int32_t>(64, static_cast<int32_t>(mean_pool * uniform(0.5, 1.5)));
      p.free_cards = p.cards;
      p.price_cny_per_card_hour = static_cast<float>(models[p.model].price * uniform(0.7, 1.4));
      in.pools.push_back(p);
    }
  }
  in.tenant_weight.assign(static_cast<size_t>(shape.tenants), 1.0f);
  in.tenant_usage.assign(static_cast<size_t>(shape.tenants), 0.0f);
  return in;
}

}  // namespace cpn::testing
