// bench/run sim: how fast the simulator runs a national network.
//
// A network of 50 sites over the eight national hubs with 1,000,000
// accelerators (four pools of 5,000 cards per site, of six catalog models),
// the links and diurnal curves of data/topology/china.json, and a synthetic
// workload (data in the eastern hubs, gangs of 1-32 cards, 15 min - 48 h runs)
// whose arrival rate would keep half the cards busy at A800-class run times
// (most jobs run on faster cards, so fewer are). The engine runs the
// batch scheduler every 300 s of virtual time (each job's own policy: balanced). Sizes of
// 10,000, 100,000 and 1,000,000 jobs on the same network; one core; peak
// resident memory from the kernel. Prints a table, then one line of JSON with
// events per second at each size and its ratio to the smallest run's.
#include <fmt/format.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "src/core/catalog.h"
#include "src/core/data_dir.h"
#include "src/core/topology.h"
#include "src/sim/engine.h"
#include "src/sim/workload.h"

using namespace cpn;

namespace {

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double PeakRssMb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;
}

struct Hub {
  const char* area;
  const char* jurisdiction;
  double price_factor, carbon, green;
};

Result<Topology> NationalNetwork(const Catalog& catalog, int sites, int pools_per_site,
                                 int cards_per_pool) {
  auto dir = FindDataDir();
  if (!dir.ok()) return dir.status();
  auto text = ReadFile(*dir + "/topology/china.json");
  if (!text.ok()) return text.status();
  Json doc = Json::parse(*text);
  const Hub hubs[] = {{"jjj", "CN-HE", 1.15, 0.58, 0.1}, {"yrd", "CN-JS", 1.2, 0.55, 0.1},
                      {"gba", "CN-GD", 1.2, 0.5, 0.15},  {"cy", "CN-SC", 1.0, 0.2, 0.6},
                      {"nm", "CN-NM", 0.8, 0.65, 0.3},   {"gz", "CN-GZ", 0.85, 0.35, 0.4},
                      {"gs", "CN-GS", 0.8, 0.45, 0.4},   {"nx", "CN-NX", 0.8, 0.6, 0.35}};
  const struct {
    const char* id;
    double price;
  } models[] = {{"nvidia-h800-sxm", 18}, {"nvidia-a800-sxm", 11},    {"ascend-910b", 8},
                {"nvidia-h20", 9},       {"cambricon-mlu370-x8", 4}, {"hygon-dcu-k100-ai", 6}};
  Json list = Json::array();
  for (int s = 0; s < sites; ++s) {
    const Hub& h = hubs[s % 8];
    std::string id = fmt::format("cpn:cn.{}/bench/site-{:02}", h.area, s);
    Json pools = Json::array();
    for (int p = 0; p < pools_per_site; ++p) {
      const auto& m = models[(s + p) % 6];
      pools.push_back({{"id", fmt::format("{}/pool-{}", id, p)},
                       {"accelerator", m.id},
                       {"cards", cards_per_pool},
                       {"price_cny_per_card_hour", m.price * h.price_factor}});
    }
    list.push_back({{"id", id},
                    {"name", fmt::format("site {}", s)},
                    {"area", h.area},
                    {"jurisdiction", h.jurisdiction},
                    {"pue", 1.25},
                    {"electricity_cny_per_kwh", 0.3 + 0.3 * h.price_factor},
                    {"carbon_kg_per_kwh", h.carbon},
                    {"green_share", h.green},
                    {"pools", pools}});
  }
  doc["sites"] = list;
  return Topology::FromJson(doc, "bench-network", catalog);
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  // --quick: the two smaller sizes; --jobs N: one size (for profiling);
  // --round-s S: virtual seconds between rounds (default 300).
  bool quick = false;
  int64_t only = 0;
  double round_s = 300;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--quick") {
      quick = true;
    } else if (a == "--jobs" && i + 1 < argc) {
      only = std::atoll(argv[++i]);
    } else if (a == "--round-s" && i + 1 < argc) {
      round_s = std::atof(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: bench/run sim [--quick] [--jobs N] [--round-s S]\n");
      return 2;
    }
  }
  auto catalog = Catalog::LoadDefault();
  if (!catalog.ok()) {
    std::fprintf(stderr, "%s\n", catalog.status().ToString().c_str());
    return 1;
  }
  const int kSites = 50, kPools = 4, kCards = 5000;
  auto topo = NationalNetwork(*catalog, kSites, kPools, kCards);
  if (!topo.ok()) {
    std::fprintf(stderr, "%s\n", topo.status().ToString().c_str());
    return 1;
  }
  const double total_cards = double{kSites} * kPools * kCards;
  std::vector<std::string> east;
  for (const Site& s : topo->sites()) {
    if (s.area == "jjj" || s.area == "yrd" || s.area == "gba") east.push_back(s.id);
  }
  // Mean card-hours per synthetic job, to set the arrival rate for ~50% load.
  sim::SyntheticOptions probe;
  probe.jobs = 20000;
  probe.data_sites = east;
  probe.max_dataset_gb = 100;
  double card_s = 0;
  for (const auto& j : sim::SyntheticWorkload(probe)) {
    card_s += static_cast<double>(j.spec.cards) * j.duration_s;
  }
  const double card_h_per_job = card_s / 3600 / static_cast<double>(probe.jobs);
  const double rate_per_h = 0.5 * total_cards / card_h_per_job;

  std::printf(
      "simulated network: %d sites, %d pools, %.0f accelerators; %.0f arrivals/h "
      "(sized for half the cards busy at A800-class run times), rounds every %.0f s\n",
      kSites, kSites * kPools, total_cards, rate_per_h, round_s);
  std::printf("%10s %12s %10s %10s %12s %12s %10s %10s\n", "jobs", "events", "rounds", "wall s",
              "events/s", "virtual h", "util %", "peak MB");
  std::vector<int64_t> sizes = quick ? std::vector<int64_t>{10'000, 100'000}
                                     : std::vector<int64_t>{10'000, 100'000, 1'000'000};
  if (only > 0) sizes = {only};
  std::string json = "{\"bench\":\"sim\",\"accelerators\":" + fmt::format("{:.0f}", total_cards) +
                     ",\"sites\":" + std::to_string(kSites) +
                     fmt::format(",\"round_s\":{:g},\"runs\":[", round_s);
  double base_eps = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    sim::SyntheticOptions o;
    o.jobs = sizes[i];
    o.arrivals_per_hour = rate_per_h;
    o.data_sites = east;
    o.max_dataset_gb = 100;
    o.seed = 7;
    auto gen0 = std::chrono::steady_clock::now();
    auto jobs = sim::SyntheticWorkload(o);
    double gen_s = Seconds(gen0);
    sim::SimOptions opt;
    // Each job keeps its own policy (the generator's default, balanced).
    opt.round_s = round_s;
    auto t0 = std::chrono::steady_clock::now();
    sim::SimReport r = sim::Simulate(*catalog, *topo, jobs, opt);
    double wall = Seconds(t0);
    double eps = static_cast<double>(r.events) / wall;
    if (i == 0) base_eps = eps;
    double busy = 0, n = 0;
    for (const auto& [area, u] : r.utilisation_by_area) {
      busy += u;
      n += 1;
    }
    double peak = PeakRssMb();
    std::printf("%10lld %12lld %10lld %10.1f %12.0f %12.1f %10.1f %10.0f\n",
                static_cast<long long>(sizes[i]), static_cast<long long>(r.events),
                static_cast<long long>(r.rounds), wall, eps, r.makespan_s / 3600, 100 * busy / n,
                peak);
    if (r.done + r.never_placed != r.jobs || r.residency_violations != 0) {
      std::fprintf(stderr, "inconsistent report: %lld done, %lld never placed, %lld breaks\n",
                   static_cast<long long>(r.done), static_cast<long long>(r.never_placed),
                   static_cast<long long>(r.residency_violations));
      return 1;
    }
    json += fmt::format(
        "{}{{\"jobs\":{},\"events\":{},\"rounds\":{},\"wall_s\":{:.2f},\"generate_s\":{:.2f},"
        "\"events_per_s\":{:.0f},\"events_per_s_vs_smallest\":{:.3f},\"peak_rss_mb\":{:.0f},"
        "\"done\":{},\"mean_wait_s\":{:.1f}}}",
        i ? "," : "", sizes[i], r.events, r.rounds, wall, gen_s, eps, eps / base_eps, peak, r.done,
        r.mean_wait_s);
  }
  json += "],\"targets\":{\"wall_s_at_1m\":120,\"peak_rss_mb\":2048}}";
  std::printf("%s\n", json.c_str());
  return 0;
}
