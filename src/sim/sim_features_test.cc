// The simulator's network effects: links shared between transfers, site
// outages, diurnal prices and carbon, mapped accelerators, trace converters.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "src/sim/charts.h"
#include "src/sim/convert.h"
#include "src/sim/engine.h"
#include "src/testing/fixtures.h"

namespace cpn::sim {
namespace {

// Data in Beijing (an expensive pool), cheap cards in Ningxia, a 1 GB/s link.
Topology TwoAreas(const Catalog& catalog, const std::string& diurnal = "") {
  Json doc = Json::parse(R"({"version":1,"sites":[
    {"id":"cpn:cn.bj/acme/bj-1","name":"east","area":"jjj","jurisdiction":"CN-BJ","pue":1.5,
     "electricity_cny_per_kwh":0.8,"carbon_kg_per_kwh":0.6,"green_share":0,
     "pools":[{"id":"cpn:cn.bj/acme/bj-1/gpu","accelerator":"test-gpu","cards":4,
               "price_cny_per_card_hour":1000}]},
    {"id":"cpn:cn.nx/acme/nx-1","name":"west","area":"nx","jurisdiction":"CN-NX","pue":1.25,
     "electricity_cny_per_kwh":0.4,"carbon_kg_per_kwh":0.5,"green_share":0,
     "pools":[{"id":"cpn:cn.nx/acme/nx-1/gpu","accelerator":"test-gpu","cards":16,
               "price_cny_per_card_hour":5}]}],
   "links":[{"a":"jjj","b":"nx","rtt_ms":0,"bandwidth_gbps":8,"cny_per_gb":0}],
   "intra_area_link":{"rtt_ms":0,"bandwidth_gbps":100,"cny_per_gb":0},
   "default_link":{"rtt_ms":0,"bandwidth_gbps":1,"cny_per_gb":0})" +
                         diurnal + "}");
  auto t = Topology::FromJson(doc, "two-areas", catalog);
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return std::move(t).value();
}

Json TopologyToJsonForTest(const Topology& t) {
  Json sites = Json::array();
  for (const Site& s : t.sites()) sites.push_back(SiteToJson(s));
  Json links = Json::array();
  for (const Link& l : t.links()) {
    Json j = LinkToJson(l);
    j["a"] = l.a;
    j["b"] = l.b;
    links.push_back(j);
  }
  return Json{{"version", 1},
              {"sites", sites},
              {"links", links},
              {"intra_area_link", LinkToJson(t.intra_area())},
              {"default_link", LinkToJson(t.default_link())}};
}

WorkloadJob Job(double arrival_s, double duration_s, double dataset_gb,
                const std::string& data = "cpn:cn.bj/acme/bj-1") {
  WorkloadJob j;
  j.arrival_s = arrival_s;
  j.duration_s = duration_s;
  j.spec.name = "j";
  j.spec.tenant = "t";
  j.spec.cards = 1;
  j.spec.work_fp16_eflop = 100e12 * 0.5 * duration_s / 1e18;  // duration_s on a test-gpu
  j.spec.dataset_site = j.spec.home_site = data;
  j.spec.dataset_gb = dataset_gb;
  j.spec.policy = Policy::kCheapest;
  j.spec.command = "true";
  return j;
}

TEST(Simulator, ConcurrentTransfersShareTheLink) {
  Catalog catalog = cpn::testing::TestCatalog();
  Topology topo = TwoAreas(catalog);
  SimOptions opt;
  // 3,600 GB over 1 GB/s: an hour alone.
  SimReport one = Simulate(catalog, topo, {Job(0, 600, 3600)}, opt);
  ASSERT_EQ(one.done, 1);
  EXPECT_NEAR(one.mean_staging_s, 3600, 1);
  EXPECT_NEAR(one.data_moved_tb, 3.6, 1e-9);
  // Two at once: each gets half, both take two hours.
  SimReport two = Simulate(catalog, topo, {Job(0, 600, 3600), Job(0, 600, 3600)}, opt);
  EXPECT_NEAR(two.mean_staging_s, 7200, 1);
  // The second half an hour later: the first has 1,800 GB left, shared until
  // it ends at 5,400 s; the second then finishes alone at 7,200 s. Both take
  // 5,400 s.
  SimReport staggered = Simulate(catalog, topo, {Job(0, 600, 3600), Job(1800, 600, 3600)}, opt);
  EXPECT_NEAR(staggered.mean_staging_s, 5400, 1);
  EXPECT_NEAR(staggered.makespan_s, 7200 + 600, 1);
  EXPECT_EQ(staggered.residency_violations, 0);
  // A link whose capacity holds two transfers at full speed does not slow them.
  Json doc = TopologyToJsonForTest(topo);
  doc["links"][0]["capacity_gbps"] = 16;
  Topology wide = std::move(Topology::FromJson(doc, "wide", catalog)).value();
  SimReport both = Simulate(catalog, wide, {Job(0, 600, 3600), Job(0, 600, 3600)}, opt);
  EXPECT_NEAR(both.mean_staging_s, 3600, 1);
  SimReport three =
      Simulate(catalog, wide, {Job(0, 600, 3600), Job(0, 600, 3600), Job(0, 600, 3600)}, opt);
  EXPECT_NEAR(three.mean_staging_s, 3600 * 1.5, 1);  // 2 GB/s among three
}

TEST(Simulator, OutageStopsRunsThatThenFinishElsewhereOrLater) {
  Catalog catalog = cpn::testing::TestCatalog();
  Topology topo = cpn::testing::TestTopology(catalog);
  std::vector<WorkloadJob> jobs;
  for (int i = 0; i < 40; ++i) {
    jobs.push_back(Job(60.0 * i, 7200, 0, "cpn:cn.nx/acme/nx-1"));
    jobs.back().spec.software.clear();
  }
  SimOptions opt;
  SimReport calm = Simulate(catalog, topo, jobs, opt);
  EXPECT_EQ(calm.done, 40);
  EXPECT_EQ(calm.interrupted, 0);
  // sg-1 is the cheapest pool; it goes dark from hour 1 to hour 4.
  auto outage = ParseOutage("cpn:sg.sg/acme/sg-1,1,3", topo);
  ASSERT_TRUE(outage.ok()) << outage.status().ToString();
  opt.outages.push_back(*outage);
  SimReport r = Simulate(catalog, topo, jobs, opt);
  EXPECT_EQ(r.done, 40);
  EXPECT_EQ(r.never_placed, 0);
  EXPECT_EQ(r.residency_violations, 0);
  EXPECT_GT(r.interrupted, 0);
  EXPECT_GT(r.lost_card_h, 0);
  EXPECT_GT(r.mean_completion_s, calm.mean_completion_s);
  // Nothing held sg-1's cards while it was out; nx-1 took work meanwhile.
  size_t sg = 0, nx = 0;
  for (size_t a = 0; a < r.utilisation_by_area.size(); ++a) {
    if (r.utilisation_by_area[a].first == "sg") sg = a;
    if (r.utilisation_by_area[a].first == "nx") nx = a;
  }
  ASSERT_GE(r.utilisation_over_time[sg].size(), 5u);
  EXPECT_GT(r.utilisation_over_time[sg][0], 0);
  for (size_t b = 1; b <= 3; ++b) {
    EXPECT_EQ(r.utilisation_over_time[sg][b], 0) << "hour " << b;
  }
  EXPECT_GT(r.utilisation_over_time[nx][1], 0);
  EXPECT_NE(r.ToText().find("runs stopped and queued again"), std::string::npos);
  // Bad outage specs are named precisely.
  EXPECT_NE(ParseOutage("cpn:cn.xx/a/b,1,2", topo).status().message().find("no site"),
            std::string::npos);
  EXPECT_NE(ParseOutage("cpn:sg.sg/acme/sg-1,1", topo).status().message().find("three"),
            std::string::npos);
  EXPECT_NE(ParseOutage("cpn:sg.sg/acme/sg-1,1,0", topo).status().message().find("HOURS"),
            std::string::npos);
  // Baselines survive outages too.
  opt.baseline = Baseline::kGreedyCheapest;
  SimReport g = Simulate(catalog, topo, jobs, opt);
  EXPECT_EQ(g.done, 40);
  EXPECT_GT(g.interrupted, 0);
}

TEST(Simulator, DiurnalTariffAndCarbonAreMetered) {
  Catalog catalog = cpn::testing::TestCatalog();
  // Night (hours 0-11): half-price power on a dirty grid; day: 1.5x, clean.
  std::string curve = R"(,"diurnal":{"default":{
      "tariff_factor":[0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,
                       1.5,1.5,1.5,1.5,1.5,1.5,1.5,1.5,1.5,1.5,1.5,1.5],
      "carbon_factor":[2,2,2,2,2,2,2,2,2,2,2,2,0,0,0,0,0,0,0,0,0,0,0,0]}})";
  Topology topo = TwoAreas(catalog, curve);
  Topology flat = TwoAreas(catalog);
  SimOptions opt;
  auto night = Simulate(catalog, topo, {Job(0, 3600, 0, "cpn:cn.nx/acme/nx-1")}, opt);
  auto day = Simulate(catalog, topo, {Job(12 * 3600, 3600, 0, "cpn:cn.nx/acme/nx-1")}, opt);
  auto mean = Simulate(catalog, flat, {Job(0, 3600, 0, "cpn:cn.nx/acme/nx-1")}, opt);
  const double kw = 0.4 * 1.25;  // one test-gpu at PUE 1.25
  EXPECT_NEAR(mean.cost_cny, 5, 1e-6);
  EXPECT_NEAR(night.cost_cny, 5 - kw * 0.4 * 0.5, 1e-6);
  EXPECT_NEAR(day.cost_cny, 5 + kw * 0.4 * 0.5, 1e-6);
  EXPECT_NEAR(mean.carbon_t, kw * 0.5 / 1000, 1e-9);
  EXPECT_NEAR(night.carbon_t, 2 * kw * 0.5 / 1000, 1e-9);
  EXPECT_NEAR(day.carbon_t, 0, 1e-12);
  EXPECT_NEAR(night.energy_kwh, day.energy_kwh, 1e-9);
  // A run across the switch at noon is metered per hour.
  auto across = Simulate(catalog, topo, {Job(11 * 3600, 7200, 0, "cpn:cn.nx/acme/nx-1")}, opt);
  EXPECT_NEAR(across.cost_cny, 10, 1e-6);
  EXPECT_NEAR(across.carbon_t, 2 * kw * 0.5 / 1000, 1e-9);
  // Curves are validated.
  Json doc = Json::parse(R"({"version":1,"sites":[],"links":[],
    "intra_area_link":{"rtt_ms":0,"bandwidth_gbps":100,"cny_per_gb":0},
    "default_link":{"rtt_ms":0,"bandwidth_gbps":1,"cny_per_gb":0},
    "diurnal":{"nx":{"tariff_factor":[1,1],"carbon_factor":[]}}})");
  auto bad = Topology::FromJson(doc, "t", catalog);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("t.diurnal.nx.tariff_factor: expected 24 hourly factors"),
            std::string::npos)
      << bad.status().message();
}

TEST(Simulator, UnknownAcceleratorsAreMappedByCapacityAndReported) {
  Catalog catalog = cpn::testing::TestCatalog();
  Topology topo = cpn::testing::TestTopology(catalog);
  std::string csv = std::string(kWorkloadHeader) +
                    "\n0,t,training,tesla-v100,,2,3600,cpn:cn.nx/acme/nx-1,0,country,,125"
                    "\n10,t,training,tesla-v100,,1,3600,cpn:cn.nx/acme/nx-1,0,country,,125"
                    "\n20,t,training,test-gpu,,1,3600,cpn:cn.nx/acme/nx-1,0,country,,\n";
  auto jobs = ParseWorkloadCsv(csv, "w.csv", catalog);
  ASSERT_TRUE(jobs.ok()) << jobs.status().ToString();
  EXPECT_EQ((*jobs)[0].mapped_from, "tesla-v100");
  EXPECT_TRUE((*jobs)[0].spec.accelerator.empty());
  // Work is the trace's duration on the named card's capacity.
  EXPECT_NEAR((*jobs)[0].spec.work_fp16_eflop, 2 * 125e12 * 0.4 * 3600 / 1e18, 1e-9);
  std::string written = WorkloadToCsv(*jobs);
  EXPECT_NE(written.find("tesla-v100,0.36,2,3600.000,cpn:cn.nx/acme/nx-1,0,country,,125\n"),
            std::string::npos)
      << written;
  EXPECT_EQ(WorkloadToCsv(ParseWorkloadCsv(written, "again.csv", catalog).value()), written);
  for (auto& j : *jobs) j.spec.software.clear();
  SimReport r = Simulate(catalog, topo, *jobs, {});
  EXPECT_EQ(r.done, 3);
  ASSERT_EQ(r.mapped_accelerators.size(), 1u);
  EXPECT_EQ(r.mapped_accelerators[0].name, "tesla-v100");
  EXPECT_EQ(r.mapped_accelerators[0].jobs, 2);
  EXPECT_NE(r.ToText().find("2 jobs named 'tesla-v100', not in the catalog"), std::string::npos);
  EXPECT_NE(r.ToJson().find("\"mapped_accelerators\""), std::string::npos);
  // Without a capacity the reader says what is missing.
  auto bad = ParseWorkloadCsv(
      std::string(kWorkloadHeader) + "\n0,t,training,tesla-v100,,2,3600,cpn:cn.nx/acme/nx-1,0,,,\n",
      "w.csv", catalog);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("w.csv:2: accelerator: unknown accelerator 'tesla-v100' "
                                        "(not in the catalog; give its FP16 TFLOPS"),
            std::string::npos)
      << bad.status().message();
}

TEST(Convert, AlibabaPodsBecomeJobs) {
  const std::string header =
      "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,"
      "deletion_time,scheduled_time\n";
  std::string pods = header +
                     "p0,12000,16384,1,1000,,LS,Running,0,7200,100\n"   // 1 card, 7100 s
                     "p1,6000,12288,0,0,,BE,Running,5,900,5\n"          // CPU only: skipped
                     "p2,6000,12288,2,1000,,BE,Failed,10,1000,20\n"     // 2 cards, 980 s
                     "p3,6000,12288,1,460,,Burstable,Pending,30,40,\n"  // never ran
                     "p4,6000,12288,1,500,V100M32|V100M16,LS,Running,8,3608,8\n";  // arrives 8
  std::string nodes =
      "sn,cpu_milli,memory_mib,gpu,model\nn0,1,1,2,T4\nn1,1,1,2,V100M32\nn2,1,1,0,\n";
  ConvertOptions o;
  o.data_sites = {"cpn:cn.bj/acme/bj-1"};
  ConvertSummary summary;
  auto jobs = ConvertAlibabaGpuPods(pods, "pods.csv", nodes, "nodes.csv", o, &summary);
  ASSERT_TRUE(jobs.ok()) << jobs.status().ToString();
  ASSERT_EQ(jobs->size(), 3u);
  EXPECT_EQ(summary.rows, 5);
  // Sorted by creation time: p0 (0), p4 (8), p2 (10).
  EXPECT_EQ((*jobs)[0].duration_s, 7100);
  EXPECT_EQ((*jobs)[0].spec.job_class, JobClass::kInference);
  EXPECT_EQ((*jobs)[0].mapped_from, "alibaba-openb-gpu");
  EXPECT_NEAR((*jobs)[0].ref_fp16_tflops, (65 + 125) / 2.0, 1e-9);  // the cluster's mean card
  EXPECT_EQ((*jobs)[1].mapped_from, "V100M32");
  EXPECT_EQ((*jobs)[1].ref_fp16_tflops, 125);
  EXPECT_EQ((*jobs)[2].spec.cards, 2);
  EXPECT_EQ((*jobs)[2].spec.tenant, "alibaba-be");
  EXPECT_EQ((*jobs)[2].spec.job_class, JobClass::kBatch);
  bool said_skips = false;
  for (const auto& n : summary.notes) {
    said_skips |= n.find("skipped 1 CPU-only pods and 1 pods that never ran") != std::string::npos;
  }
  EXPECT_TRUE(said_skips);
  // What it writes reads back as a workload.
  Catalog catalog = cpn::testing::TestCatalog();
  auto back = ParseWorkloadCsv(WorkloadToCsv(*jobs), "converted.csv", catalog);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ((*back)[1].mapped_from, "V100M32");
  // Bad input names the line and column.
  auto bad = ConvertAlibabaGpuPods(header + "p0,1,1,two,1000,,LS,Running,0,7200,100\n", "pods.csv",
                                   "", "", o, nullptr);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("pods.csv:2: num_gpu: expected a number"),
            std::string::npos)
      << bad.status().message();
  bad = ConvertAlibabaGpuPods("name,cpu\n", "pods.csv", "", "", o, nullptr);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("pods.csv:1: expected the header"), std::string::npos);
  bad = ConvertAlibabaGpuPods(header + "p0,1,1,1,1000,,LS,Running,0,7200\n", "pods.csv", "", "", o,
                              nullptr);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("pods.csv:2: expected 11 columns, got 10"),
            std::string::npos);
}

TEST(Convert, AzureLlmRequestsBecomeInferenceJobs) {
  std::string trace =
      "TIMESTAMP,ContextTokens,GeneratedTokens\n"
      "2023-11-16 23:59:59.5000000,1000,10\n"
      "2023-11-17 00:00:01.0000000,2000,20\n";
  ConvertOptions o;
  o.data_sites = {"cpn:cn.bj/acme/bj-1", "cpn:cn.nx/acme/nx-1"};
  ConvertSummary summary;
  auto jobs = ConvertAzureLlmInference(trace, "azure.csv", o, &summary);
  ASSERT_TRUE(jobs.ok()) << jobs.status().ToString();
  ASSERT_EQ(jobs->size(), 2u);
  EXPECT_DOUBLE_EQ((*jobs)[0].arrival_s, 0);
  EXPECT_NEAR((*jobs)[1].arrival_s, 1.5, 1e-6);  // across midnight
  EXPECT_EQ((*jobs)[1].spec.job_class, JobClass::kInference);
  EXPECT_NEAR((*jobs)[1].spec.work_fp16_eflop, 2 * 70e9 * 2020 / 1e18, 1e-12);
  EXPECT_EQ((*jobs)[1].spec.dataset_site, "cpn:cn.nx/acme/nx-1");
  auto bad = ConvertAzureLlmInference(
      "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 10:00:00,5,5\n2023-11-16 09:00:00,5,5\n",
      "azure.csv", o, nullptr);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("azure.csv:3: TIMESTAMP: timestamps must not decrease"),
            std::string::npos)
      << bad.status().message();
  bad = ConvertAzureLlmInference("TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,5,5\n",
                                 "azure.csv", o, nullptr);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("azure.csv:2: TIMESTAMP: expected 'YYYY-MM-DD"),
            std::string::npos);
}

TEST(Charts, UtilisationOverTimeDrawsAHubPerLine) {
  Catalog catalog = cpn::testing::TestCatalog();
  Topology topo = cpn::testing::TestTopology(catalog);
  std::vector<WorkloadJob> jobs;
  for (int i = 0; i < 10; ++i) {
    jobs.push_back(Job(600.0 * i, 3600, 0, "cpn:cn.nx/acme/nx-1"));
    jobs.back().spec.software.clear();
  }
  SimReport r = Simulate(catalog, topo, jobs, {});
  std::string svg = UtilisationOverTimeSvg(r);
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("<polyline"), std::string::npos);
  for (const auto& [area, u] : r.utilisation_by_area) {
    EXPECT_NE(svg.find(">" + area + "<"), std::string::npos) << area;
  }
  EXPECT_NE(r.ToJson().find("\"utilisation_over_time\""), std::string::npos);
}

}  // namespace
}  // namespace cpn::sim
