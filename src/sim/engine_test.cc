#include "src/sim/engine.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <iostream>
#include <random>

#include "src/sim/charts.h"
#include "src/testing/fixtures.h"

namespace cpn::sim {
namespace {

Topology OneSite(const Catalog& catalog, int cards) {
  Json doc = Json::parse(fmt::format(R"({{"version":1,"sites":[
    {{"id":"cpn:cn.nx/acme/nx-1","name":"one","area":"nx","jurisdiction":"CN-NX","pue":1.1,
     "electricity_cny_per_kwh":0.36,"carbon_kg_per_kwh":0.6,"green_share":0.5,
     "pools":[{{"id":"cpn:cn.nx/acme/nx-1/gpu","accelerator":"test-gpu","cards":{},
               "price_cny_per_card_hour":5}}]}}],
   "links":[],"intra_area_link":{{"rtt_ms":2,"bandwidth_gbps":100,"cny_per_gb":0}},
   "default_link":{{"rtt_ms":50,"bandwidth_gbps":1,"cny_per_gb":0.2}}}})",
                                     cards));
  return std::move(Topology::FromJson(doc, "one-site", catalog)).value();
}

// M/M/c: Poisson arrivals, exponential run times, one card per job.
std::vector<WorkloadJob> MMc(double lambda_per_h, double mu_per_h, int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::exponential_distribution<double> gap(lambda_per_h / 3600), run(mu_per_h / 3600);
  std::vector<WorkloadJob> jobs;
  double t = 0;
  for (int64_t i = 0; i < n; ++i) {
    t += gap(rng);
    WorkloadJob j;
    j.arrival_s = t;
    j.duration_s = run(rng);
    j.spec.name = "j";
    j.spec.tenant = "t";
    j.spec.cards = 1;
    j.spec.work_fp16_eflop = 0.1;
    j.spec.dataset_site = j.spec.home_site = "cpn:cn.nx/acme/nx-1";
    j.spec.command = "true";
    jobs.push_back(j);
  }
  return jobs;
}

TEST(Simulator, MeanWaitMatchesErlangC) {
  // One pool of c cards, Poisson arrivals, exponential run times, one card per
  // job: an M/M/c queue. The simulated mean wait must be within 3% of Erlang
  // C, the formula must fall inside the simulation's 99% confidence interval
  // (batch means, 30 batches after a warm-up), and that interval must be
  // tighter than the 3% being checked. c = 2 at 50% load over a million jobs
  // gives an interval of about +-2%.
  Catalog catalog = cpn::testing::TestCatalog();
  const int c = 2;
  const double mu = 1.0, lambda = 0.5 * c * mu;
  Topology topo = OneSite(catalog, c);
  const int64_t n = 1'000'000;
  auto jobs = MMc(lambda, mu, n, 42);
  SimOptions opt;
  opt.record_waits = true;
  SimReport r = Simulate(catalog, topo, jobs, opt);
  ASSERT_EQ(r.done, n);
  EXPECT_EQ(r.residency_violations, 0);
  const size_t warmup = 10'000, batches = 30;
  const size_t per = (static_cast<size_t>(n) - warmup) / batches;
  std::vector<double> means;
  for (size_t b = 0; b < batches; ++b) {
    double sum = 0;
    for (size_t i = 0; i < per; ++i) sum += r.wait_s_by_job[warmup + b * per + i] / 3600;
    means.push_back(sum / static_cast<double>(per));
  }
  double mean = 0, var = 0;
  for (double m : means) mean += m / batches;
  for (double m : means) var += (m - mean) * (m - mean) / (batches - 1);
  double half = 2.756 * std::sqrt(var / batches);  // t(0.995, 29)
  double theory = ErlangCMeanWait(c, lambda, mu);
  std::cout << fmt::format(
      "M/M/{} at load 0.5, {} jobs: simulated mean wait {:.5f} h +- {:.5f} "
      "(99%), Erlang C {:.5f} h, difference {:+.2f}%\n",
      c, n, mean, half, theory, 100 * (mean - theory) / theory);
  EXPECT_LT(std::fabs(mean - theory) / theory, 0.03)
      << "simulated " << mean << " h, Erlang C " << theory << " h";
  EXPECT_LT(std::fabs(mean - theory), half)
      << "simulated " << mean << " h +- " << half << ", Erlang C " << theory << " h";
  EXPECT_LT(half / theory, 0.025) << "confidence interval too wide to be a check";
}

TEST(Simulator, SameInputSameReport) {
  Catalog catalog = cpn::testing::TestCatalog();
  Topology topo = cpn::testing::TestTopology(catalog);
  SyntheticOptions o;
  o.jobs = 300;
  o.arrivals_per_hour = 6;
  o.data_sites = {"cpn:cn.bj/acme/bj-1", "cpn:cn.nx/acme/nx-1"};
  auto jobs = SyntheticWorkload(o);
  for (auto& j : jobs) j.spec.software.clear();
  SimOptions opt;
  opt.policy = Policy::kCheapest;
  std::string a = Simulate(catalog, topo, jobs, opt).ToJson();
  std::string b = Simulate(catalog, topo, jobs, opt).ToJson();
  EXPECT_EQ(a, b);
  SimReport r = Simulate(catalog, topo, jobs, opt);
  EXPECT_EQ(r.residency_violations, 0);
  EXPECT_EQ(r.done + r.never_placed, r.jobs);
  EXPECT_GT(r.cost_cny, 0);
}

TEST(Simulator, BaselinesRunAndLocalKeepsDataHome) {
  Catalog catalog = cpn::testing::TestCatalog();
  Topology topo = cpn::testing::TestTopology(catalog);
  SyntheticOptions o;
  o.jobs = 200;
  o.arrivals_per_hour = 4;
  o.data_sites = {"cpn:cn.bj/acme/bj-1"};
  auto jobs = SyntheticWorkload(o);
  for (auto& j : jobs) {
    j.spec.software.clear();
    j.spec.cards = std::min<int64_t>(j.spec.cards, 8);
    j.spec.residency = Residency::kAnywhere;
  }
  for (const char* name : {"local", "round-robin", "greedy-cheapest", "cheapest"}) {
    auto p = ParseSimPolicy(name);
    ASSERT_TRUE(p.ok()) << name;
    SimOptions opt;
    opt.policy = p->first;
    opt.baseline = p->second;
    SimReport r = Simulate(catalog, topo, jobs, opt);
    EXPECT_EQ(r.policy, name);
    EXPECT_EQ(r.done, r.jobs) << name;
    EXPECT_EQ(r.residency_violations, 0) << name;
    if (std::string(name) == "local") {
      // Everything ran in Beijing's area: no data moved, nothing elsewhere busy.
      EXPECT_EQ(r.data_moved_tb, 0);
      for (const auto& [area, u] : r.utilisation_by_area) {
        if (area != "jjj") {
          EXPECT_EQ(u, 0) << area;
        }
      }
    }
    if (std::string(name) == "cheapest") {
      EXPECT_GT(r.data_moved_tb, 0);  // data goes west
    }
  }
  EXPECT_FALSE(ParseSimPolicy("fastest-ever").ok());
  // Charts name every policy and every hub.
  std::vector<SimReport> reports;
  for (const char* name : {"local", "cheapest"}) {
    SimOptions opt;
    opt.policy = ParseSimPolicy(name)->first;
    opt.baseline = ParseSimPolicy(name)->second;
    reports.push_back(Simulate(catalog, topo, jobs, opt));
  }
  std::string cost = CostVsCompletionSvg(reports), util = UtilisationSvg(reports);
  for (const std::string* svg : {&cost, &util}) {
    EXPECT_EQ(svg->rfind("<svg", 0), 0u);
    EXPECT_NE(svg->find("</svg>"), std::string::npos);
    EXPECT_NE(svg->find(">local<"), std::string::npos);
    EXPECT_NE(svg->find(">cheapest<"), std::string::npos);
  }
  EXPECT_NE(util.find(">jjj<"), std::string::npos);
}

TEST(Workload, CsvRoundTripsAndNamesTheBadLine) {
  Catalog catalog = cpn::testing::TestCatalog();
  SyntheticOptions o;
  o.jobs = 20;
  o.data_sites = {"cpn:cn.bj/acme/bj-1"};
  auto jobs = SyntheticWorkload(o);
  std::string csv = WorkloadToCsv(jobs);
  auto back = ParseWorkloadCsv(csv, "w.csv", catalog);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_EQ(back->size(), jobs.size());
  EXPECT_EQ((*back)[3].spec.cards, jobs[3].spec.cards);
  EXPECT_EQ(WorkloadToCsv(*back), csv);

  std::string bad = csv;
  bad.insert(bad.find('\n') + 1, "0,t,training,,1,-4,60,cpn:cn.bj/acme/bj-1,0,anywhere,,\n");
  auto r = ParseWorkloadCsv(bad, "w.csv", catalog);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("w.csv:2: cards: expected a number between 1"),
            std::string::npos)
      << r.status().message();
  r = ParseWorkloadCsv("a,b\n", "x.csv", catalog);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("x.csv:1: the first line must be the header"),
            std::string::npos);
  r = ParseWorkloadCsv(std::string(kWorkloadHeader) +
                           "\n1,t,training,warp-9,1,1,60,cpn:cn.bj/acme/bj-1,0,anywhere,,\n",
                       "y.csv", catalog);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("y.csv:2: accelerator: unknown accelerator 'warp-9'"),
            std::string::npos)
      << r.status().message();
}

}  // namespace
}  // namespace cpn::sim
