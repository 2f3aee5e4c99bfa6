#include "src/sched/scheduler.h"

#include <gtest/gtest.h>

#include "src/testing/fixtures.h"

namespace cpn::sched {
namespace {

class SchedulerTest : public ::testing::Test {
 protected:
  SchedulerTest()
      : catalog_(cpn::testing::TestCatalog()), topo_(cpn::testing::TestTopology(catalog_)) {}

  JobSpec Job() {
    JobSpec j;
    j.name = "train";
    j.tenant = "t";
    j.accelerator = "test-gpu";
    j.cards = 4;
    j.work_fp16_eflop = 7.2;  // 4 cards x 100 TFLOPS x 0.5 -> 36,000 s = 10 h
    j.dataset_site = "cpn:cn.bj/acme/bj-1";
    j.home_site = j.dataset_site;
    j.dataset_gb = 100;
    j.residency = Residency::kAnywhere;
    j.policy = Policy::kCheapest;
    return j;
  }

  Decision Run(const JobSpec& j) {
    SchedulerInput in{&catalog_, &topo_, &loads_};
    return Decide(j, in);
  }

  Catalog catalog_;
  Topology topo_;
  std::map<std::string, PoolLoad> loads_;
};

TEST_F(SchedulerTest, EstimatesMatchHandComputedFigures) {
  JobSpec j = Job();
  const Site* west = topo_.FindSite("cpn:cn.nx/acme/nx-1");
  Option o = Estimate(j, *west, west->pools[0], *catalog_.Find("test-gpu"), topo_);
  EXPECT_DOUBLE_EQ(o.run_h, 10.0);
  // 100 GB x 8 / 10 Gbit/s = 80 s, plus 3 x 20 ms of set-up.
  EXPECT_NEAR(o.transfer_h, 80.06 / 3600.0, 1e-12);
  EXPECT_DOUBLE_EQ(o.transfer_cny, 5.0);   // 100 GB x 0.05
  EXPECT_DOUBLE_EQ(o.compute_cny, 200.0);  // 4 cards x 10 h x 5 CNY
  EXPECT_DOUBLE_EQ(o.total_cny, 205.0);
  EXPECT_NEAR(o.energy_kwh, 17.6, 1e-9);  // 4 x 0.4 kW x 10 h x PUE 1.1
  EXPECT_NEAR(o.carbon_kg, 5.28, 1e-9);   // 17.6 x 0.6 x (1 - 0.5)
  EXPECT_NEAR(o.electricity_cny, 17.6 * 0.36, 1e-9);

  const Site* east = topo_.FindSite("cpn:cn.bj/acme/bj-1");
  Option home = Estimate(j, *east, east->pools[0], *catalog_.Find("test-gpu"), topo_);
  EXPECT_DOUBLE_EQ(home.transfer_h, 0);  // data is already there
  EXPECT_DOUBLE_EQ(home.total_cny, 400.0);
  EXPECT_NEAR(home.energy_kwh, 24.0, 1e-9);
  EXPECT_NEAR(home.carbon_kg, 14.4, 1e-9);
}

TEST_F(SchedulerTest, CheapestGoesAbroadWhenDataMayTravelAnywhere) {
  // Singapore: 4 x 10 h x 3 = 120 + 100 GB x 0.2 = 140 CNY, the cheapest.
  Decision d = Run(Job());
  ASSERT_EQ(d.outcome, Outcome::kPlaced);
  EXPECT_EQ(d.chosen()->pool_id, "cpn:sg.sg/acme/sg-1/gpu");
  EXPECT_DOUBLE_EQ(d.chosen()->total_cny, 140.0);
  ASSERT_EQ(d.ranked.size(), 3u);
  EXPECT_EQ(d.ranked[1].pool_id, "cpn:cn.nx/acme/nx-1/gpu");
  EXPECT_EQ(d.ranked[2].pool_id, "cpn:cn.bj/acme/bj-1/gpu");
  ASSERT_TRUE(d.home);
  EXPECT_DOUBLE_EQ(d.home->total_cny, 400.0);
  // The NPU is rejected because the job names the GPU model.
  ASSERT_EQ(d.rejected.size(), 1u);
  EXPECT_EQ(d.rejected[0].reason, RejectReason::kAccelerator);
}

TEST_F(SchedulerTest, ResidencyForbidsTheCheapestOption) {
  JobSpec j = Job();
  j.residency = Residency::kCountry;
  Decision d = Run(j);
  ASSERT_EQ(d.outcome, Outcome::kPlaced);
  EXPECT_EQ(d.chosen()->pool_id, "cpn:cn.nx/acme/nx-1/gpu");
  EXPECT_DOUBLE_EQ(d.chosen()->total_cny, 205.0);
  bool found = false;
  for (const auto& r : d.rejected) {
    if (r.pool_id == "cpn:sg.sg/acme/sg-1/gpu") {
      EXPECT_EQ(r.reason, RejectReason::kResidency);
      EXPECT_NE(r.detail.find("may not leave CN"), std::string::npos);
      found = true;
    }
  }
  EXPECT_TRUE(found);
  EXPECT_NE(d.summary.find("runner-up cpn:cn.bj/acme/bj-1/gpu"), std::string::npos) << d.summary;

  j.residency = Residency::kProvince;
  d = Run(j);
  EXPECT_EQ(d.chosen()->pool_id, "cpn:cn.bj/acme/bj-1/gpu");
  j.residency = Residency::kSite;
  d = Run(j);
  EXPECT_EQ(d.chosen()->pool_id, "cpn:cn.bj/acme/bj-1/gpu");
}

TEST_F(SchedulerTest, PoliciesRankByTheirOwnObjective) {
  JobSpec j = Job();
  j.accelerator.clear();  // any model with pytorch
  j.software = {"pytorch"};
  j.residency = Residency::kCountry;
  j.policy = Policy::kFastest;
  // The NPU (200 TFLOPS) runs the work in 5 h; transfer 80 s.
  Decision d = Run(j);
  EXPECT_EQ(d.chosen()->pool_id, "cpn:cn.nx/acme/nx-1/npu");
  EXPECT_DOUBLE_EQ(d.chosen()->run_h, 5.0);
  // Greenest: the west GPU pool (5.28 kg) vs NPU (4 x 0.3 x 5 x 1.1 x 0.6 x 0.5 = 1.98 kg).
  j.policy = Policy::kGreenest;
  d = Run(j);
  EXPECT_EQ(d.chosen()->pool_id, "cpn:cn.nx/acme/nx-1/npu");
  EXPECT_NEAR(d.chosen()->carbon_kg, 1.98, 1e-9);
  // Requiring CUDA excludes the NPU with a software reason.
  j.software = {"cuda"};
  d = Run(j);
  EXPECT_EQ(d.chosen()->pool_id, "cpn:cn.nx/acme/nx-1/gpu");
  j.policy = Policy::kBalanced;
  d = Run(j);
  EXPECT_EQ(d.outcome, Outcome::kPlaced);
  EXPECT_LE(d.ranked[0].score, d.ranked[1].score);
}

TEST_F(SchedulerTest, DeadlineBudgetMemoryAndCapacityFilters) {
  JobSpec j = Job();
  j.residency = Residency::kCountry;
  j.budget_cny = 300;  // west 205 fits, east 400 does not
  Decision d = Run(j);
  EXPECT_EQ(d.chosen()->pool_id, "cpn:cn.nx/acme/nx-1/gpu");
  EXPECT_EQ(d.ranked.size(), 1u);
  j.budget_cny = 100;
  d = Run(j);
  EXPECT_EQ(d.outcome, Outcome::kInfeasible);
  EXPECT_NE(d.summary.find("budget"), std::string::npos) << d.summary;

  j = Job();
  j.deadline_h = 9.5;  // every GPU pool needs 10 h
  d = Run(j);
  EXPECT_EQ(d.outcome, Outcome::kInfeasible);
  EXPECT_NE(d.summary.find("3 deadline"), std::string::npos) << d.summary;

  j = Job();
  j.cards = 12;  // only 16-card pools qualify
  d = Run(j);
  for (const auto& r : d.rejected) {
    if (r.pool_id == "cpn:cn.bj/acme/bj-1/gpu") {
      EXPECT_EQ(r.reason, RejectReason::kCapacity);
    }
  }
  j = Job();
  j.accelerator.clear();
  j.min_memory_gb = 64;
  d = Run(j);
  for (const auto& r : d.rejected) {
    if (r.pool_id == "cpn:cn.nx/acme/nx-1/npu") {
      EXPECT_EQ(r.reason, RejectReason::kMemory);
    }
  }
}

TEST_F(SchedulerTest, BusyPoolsQueueAndDownSitesAreSkipped) {
  JobSpec j = Job();
  j.residency = Residency::kCountry;
  loads_["cpn:cn.nx/acme/nx-1/gpu"] = {2, true};  // 2 of 4 needed
  Decision d = Run(j);
  EXPECT_EQ(d.chosen()->pool_id, "cpn:cn.bj/acme/bj-1/gpu");
  loads_["cpn:cn.bj/acme/bj-1/gpu"] = {8, false};
  d = Run(j);
  EXPECT_EQ(d.outcome, Outcome::kQueued);
  EXPECT_NE(d.summary.find("cpn:cn.nx/acme/nx-1/gpu"), std::string::npos);
}

TEST_F(SchedulerTest, UnknownDataSiteIsInfeasibleAndDecisionsAreDeterministic) {
  JobSpec j = Job();
  j.dataset_site = "cpn:cn.xx/none/none-1";
  EXPECT_EQ(Run(j).outcome, Outcome::kInfeasible);
  j = Job();
  j.policy = Policy::kBalanced;
  Decision a = Run(j), b = Run(j);
  ASSERT_EQ(a.ranked.size(), b.ranked.size());
  for (size_t i = 0; i < a.ranked.size(); ++i) {
    EXPECT_EQ(a.ranked[i].pool_id, b.ranked[i].pool_id);
    EXPECT_EQ(a.ranked[i].score, b.ranked[i].score);
  }
}

TEST_F(SchedulerTest, AReplicaAtASiteMakesStagingThereFree) {
  JobSpec j = Job();
  j.residency = Residency::kCountry;
  j.dataset_gb = 10'000;  // 500 CNY and 2.2 h to move to the west
  Decision d = Run(j);
  EXPECT_EQ(d.chosen()->pool_id, "cpn:cn.bj/acme/bj-1/gpu");  // 400 CNY at home
  j.dataset_replicas = {"cpn:cn.nx/acme/nx-1"};
  d = Run(j);
  EXPECT_EQ(d.chosen()->pool_id, "cpn:cn.nx/acme/nx-1/gpu");
  EXPECT_DOUBLE_EQ(d.chosen()->transfer_h, 0);
  EXPECT_DOUBLE_EQ(d.chosen()->total_cny, 200);
}

TEST_F(SchedulerTest, OwnershipCostCountsServersAndEnergy) {
  JobSpec j = Job();
  j.cards = 12;  // two 8-card servers
  const Site* east = topo_.FindSite("cpn:cn.bj/acme/bj-1");
  OwnershipCost c = EstimateOwnership(j, *catalog_.Find("test-gpu"), 10.0, *east);
  EXPECT_EQ(c.servers, 2);
  EXPECT_DOUBLE_EQ(c.capex_cny, 1'600'000);
  EXPECT_NEAR(c.energy_cny, 12 * 0.4 * 10 * 1.5 * 0.8, 1e-9);
}

}  // namespace
}  // namespace cpn::sched
