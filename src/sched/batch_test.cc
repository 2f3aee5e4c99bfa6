#include "src/sched/batch.h"

#include <gtest/gtest.h>

#include <map>

#include "src/sched/lp_bound.h"
#include "src/testing/batch_instances.h"

namespace cpn::sched {
namespace {

using cpn::testing::InstanceShape;
using cpn::testing::MakeInstance;

bool Placed(JobOutcome o) {
  return o == JobOutcome::kPlaced || o == JobOutcome::kPlacedByPreemption;
}

void CheckInvariants(const BatchInput& in, const PlacementPlan& plan) {
  std::vector<int64_t> used(in.pools.size(), 0);
  for (size_t j = 0; j < in.jobs.size(); ++j) {
    const JobPlacement& pl = plan.jobs[j];
    if (!Placed(pl.outcome)) continue;
    ASSERT_GE(pl.pool, 0);
    const BatchPool& pool = in.pools[pl.pool];
    const BatchJob& job = in.jobs[j];
    used[pl.pool] += job.cards;  // the whole gang in this one pool
    const BatchSite& site = in.sites[pool.site];
    const BatchSite& data = in.sites[job.data_site];
    switch (job.residency) {
      case Residency::kAnywhere:
        break;
      case Residency::kCountry:
        EXPECT_EQ(site.country, data.country);
        break;
      case Residency::kProvince:
        EXPECT_EQ(site.province, data.province) << "job " << j;
        break;
      case Residency::kSite:
        EXPECT_EQ(pool.site, job.data_site) << "job " << j;
        break;
    }
    if (job.model >= 0) {
      EXPECT_EQ(pool.model, job.model);
    }
    EXPECT_TRUE(pool.available);
  }
  for (size_t p = 0; p < in.pools.size(); ++p) {
    EXPECT_LE(used[p], in.pools[p].free_cards) << "pool " << p << " over-committed";
  }
}

TEST(BatchScheduler, RandomInstancesKeepEveryInvariant) {
  for (uint64_t seed = 1; seed <= 8; ++seed) {
    InstanceShape shape;
    shape.jobs = 600;
    shape.sites = 20;
    shape.seed = seed;
    shape.capacity_over_demand = seed % 2 ? 0.7 : 1.5;  // tight and loose
    BatchInput in = MakeInstance(shape);
    BatchScheduler s;
    const PlacementPlan& plan = s.Schedule(in);
    CheckInvariants(in, plan);
    // Identical input, identical output.
    PlacementPlan first = plan;
    BatchScheduler other;
    const PlacementPlan& again = other.Schedule(in);
    ASSERT_EQ(first.jobs.size(), again.jobs.size());
    for (size_t j = 0; j < first.jobs.size(); ++j) {
      EXPECT_EQ(first.jobs[j].pool, again.jobs[j].pool);
      EXPECT_EQ(first.jobs[j].outcome, again.jobs[j].outcome);
    }
    EXPECT_EQ(first.objective, again.objective);
  }
}

TEST(BatchScheduler, EveryFeasibleJobIsEventuallyPlaced) {
  InstanceShape shape;
  shape.jobs = 800;
  shape.sites = 15;
  shape.capacity_over_demand = 0.4;  // far more demand than capacity
  BatchInput in = MakeInstance(shape);
  std::vector<bool> done(in.jobs.size(), false);
  std::vector<int32_t> full(in.pools.size());
  for (size_t p = 0; p < in.pools.size(); ++p) full[p] = in.pools[p].free_cards;
  BatchScheduler s;
  // Each round: the previous round's jobs finish; the rest are scheduled again.
  for (int round = 0; round < 200; ++round) {
    BatchInput r = in;
    r.jobs.clear();
    std::vector<size_t> ids;
    for (size_t j = 0; j < in.jobs.size(); ++j) {
      if (!done[j]) {
        r.jobs.push_back(in.jobs[j]);
        r.jobs.back().waited_h = static_cast<float>(round);
        ids.push_back(j);
      }
    }
    if (r.jobs.empty()) break;
    for (size_t p = 0; p < r.pools.size(); ++p) r.pools[p].free_cards = full[p];
    const PlacementPlan& plan = s.Schedule(r);
    CheckInvariants(r, plan);
    for (size_t k = 0; k < ids.size(); ++k) {
      if (plan.jobs[k].outcome == JobOutcome::kInfeasible) done[ids[k]] = true;
      if (Placed(plan.jobs[k].outcome)) done[ids[k]] = true;
    }
  }
  for (size_t j = 0; j < done.size(); ++j) EXPECT_TRUE(done[j]) << "job " << j << " never placed";
}

TEST(BatchScheduler, PlanIsWithinTwoPercentOfTheLpBound) {
  InstanceShape shape;
  shape.jobs = 500;
  shape.sites = 20;
  shape.capacity_over_demand = 3.0;  // a third of the network asked for
  BatchInput in = MakeInstance(shape);
  BatchScheduler s;
  double plan = s.Schedule(in).objective;
  auto lp = LpLowerBound(in, BatchOptions{});
  ASSERT_TRUE(lp.ok()) << lp.status().ToString();
  EXPECT_LE(lp->objective, plan + 1e-6);
  EXPECT_LE(plan / lp->objective, 1.02) << plan << " vs bound " << lp->objective;
}

// One 512-card pool; a stream of 8-card jobs of 1, 2 or 3 hours keeps it
// busy, so it never drains by itself. A 512-card job arrives at hour 2. With
// reservations, later small jobs may only backfill if they end before the
// reservation starts, so the pool drains and the big job starts; without them
// the small jobs keep taking the cards as they free up.
int64_t HoursUntilBigJobStarts(int max_reservations) {
  BatchInput base;
  base.models.push_back(BatchModel{100, 80, 0.4f, 0, {0.5f, 0.5f, 0.5f}});
  base.sites.push_back(BatchSite{});
  base.links.push_back(BatchLink{});
  base.pools.push_back(BatchPool{0, 0, 512, 512, 5, true});
  const float eflop_per_card_hour = 100 * 0.5f * 3600 * 1e-6f;
  auto job = [&](int32_t cards, int hours) {
    BatchJob j;
    j.cards = cards;
    j.work_fp16_eflop = static_cast<float>(cards * hours) * eflop_per_card_hour;
    return j;
  };
  BatchOptions o;
  o.max_reservations = max_reservations;
  BatchScheduler s(o);
  std::vector<RunningJob> running;
  std::vector<BatchJob> queue;
  uint64_t next_id = 1;
  int arrivals = 0;
  for (int64_t hour = 0; hour < 48; ++hour) {
    std::vector<RunningJob> still;
    for (RunningJob r : running) {
      r.ends_in_h -= 1;
      if (r.ends_in_h > 0.01f) still.push_back(r);
    }
    running = still;
    // More small jobs arrive every hour than the pool can run.
    for (int k = 0; k < 48; ++k) queue.push_back(job(8, 1 + arrivals++ % 3));
    if (hour == 2) queue.push_back(job(512, 1));
    for (auto& j : queue) j.waited_h += 1;
    BatchInput in = base;
    int32_t busy = 0;
    for (const auto& r : running) busy += r.cards;
    in.pools[0].free_cards = 512 - busy;
    in.running = running;
    in.jobs = queue;
    const PlacementPlan& plan = s.Schedule(in);
    std::vector<BatchJob> left;
    for (size_t j = 0; j < in.jobs.size(); ++j) {
      if (plan.jobs[j].outcome == JobOutcome::kPlaced) {
        if (in.jobs[j].cards == 512) return hour;
        float hours = in.jobs[j].work_fp16_eflop / (8 * eflop_per_card_hour);
        running.push_back({next_id++, 0, in.jobs[j].cards, hours, 0, false, 0});
      } else {
        left.push_back(in.jobs[j]);
      }
    }
    queue = left;
  }
  return -1;
}

TEST(BatchScheduler, ALargeGangIsNotStarvedByAStreamOfSmallJobs) {
  int64_t with = HoursUntilBigJobStarts(64);
  EXPECT_GE(with, 3);
  // It waits behind the small jobs queued before it, then for the pool to drain.
  EXPECT_LE(with, 12);
  EXPECT_EQ(HoursUntilBigJobStarts(0), -1);  // without reservations it starves
}

TEST(BatchScheduler, PreemptsOnlyPreemptibleLowerPriorityJobs) {
  BatchInput in;
  in.models.push_back(BatchModel{100, 80, 0.4f, 0, {0.5f, 0.5f, 0.5f}});
  in.sites.push_back(BatchSite{});
  in.links.push_back(BatchLink{});
  in.pools.push_back(BatchPool{0, 0, 64, 0, 5, true});  // full
  in.running = {
      {1, 0, 32, 10, 0, true, 0}, {2, 0, 16, 10, 0, false, 0}, {3, 0, 16, 10, 5, true, 0}};
  BatchJob urgent;
  urgent.cards = 32;
  urgent.priority = 3;
  in.jobs.push_back(urgent);
  BatchScheduler s;
  const PlacementPlan& plan = s.Schedule(in);
  EXPECT_EQ(plan.jobs[0].outcome, JobOutcome::kPlacedByPreemption);
  EXPECT_EQ(plan.preempt, std::vector<uint64_t>{1});
  // Needing 48 cards, it cannot: job 2 is not preemptible and job 3 has higher priority.
  in.jobs[0].cards = 48;
  const PlacementPlan& blocked = s.Schedule(in);
  EXPECT_TRUE(blocked.preempt.empty());
  EXPECT_EQ(blocked.jobs[0].outcome, JobOutcome::kReserved);
}

TEST(BatchScheduler, FairShareFavoursTheTenantThatUsedLess) {
  BatchInput in;
  in.models.push_back(BatchModel{100, 80, 0.4f, 0, {0.5f, 0.5f, 0.5f}});
  in.sites.push_back(BatchSite{});
  in.links.push_back(BatchLink{});
  in.pools.push_back(BatchPool{0, 0, 80, 80, 5, true});
  for (int k = 0; k < 20; ++k) {
    BatchJob j;
    j.cards = 8;
    j.tenant = static_cast<uint16_t>(k % 2);
    in.jobs.push_back(j);
  }
  in.tenant_weight = {1, 1};
  in.tenant_usage = {1000, 0};  // tenant 0 used a lot in the window
  BatchScheduler s;
  const PlacementPlan& plan = s.Schedule(in);
  int placed[2] = {0, 0};
  for (size_t j = 0; j < in.jobs.size(); ++j) {
    if (plan.jobs[j].outcome == JobOutcome::kPlaced) placed[in.jobs[j].tenant]++;
  }
  EXPECT_EQ(placed[0] + placed[1], 10);
  EXPECT_GT(placed[1], placed[0]);
  // With equal history the ten slots split evenly.
  in.tenant_usage = {0, 0};
  const PlacementPlan& even = s.Schedule(in);
  placed[0] = placed[1] = 0;
  for (size_t j = 0; j < in.jobs.size(); ++j) {
    if (even.jobs[j].outcome == JobOutcome::kPlaced) placed[in.jobs[j].tenant]++;
  }
  EXPECT_EQ(placed[0], 5);
  EXPECT_EQ(placed[1], 5);
}

TEST(BatchScheduler, AReplicaMakesStagingFree) {
  BatchInput in;
  in.models.push_back(BatchModel{100, 80, 0.4f, 0, {0.5f, 0.5f, 0.5f}});
  in.areas = 2;
  in.sites = {BatchSite{0, 0, 0, 1.2f, 0.5f}, BatchSite{1, 1, 0, 1.2f, 0.5f},
              BatchSite{1, 1, 0, 1.2f, 0.5f}};
  BatchLink far{0.5f, 8.0f / (1 * 3600), 0.01f};
  in.links = {BatchLink{}, far, far, BatchLink{}};
  in.pools = {BatchPool{0, 0, 8, 8, 10, true}, BatchPool{1, 0, 8, 8, 4, true},
              BatchPool{2, 0, 8, 8, 4.1f, true}};
  BatchJob j;
  j.cards = 8;
  j.policy = Policy::kCheapest;
  j.dataset_gb = 1000;  // 500 CNY to move
  j.data_site = 0;
  in.jobs.push_back(j);
  BatchScheduler s;
  EXPECT_EQ(s.Schedule(in).jobs[0].pool, 0);  // moving the data costs more than it saves
  in.replica_sites = {2};
  in.jobs[0].replicas_begin = 0;
  in.jobs[0].replicas_end = 1;
  EXPECT_EQ(s.Schedule(in).jobs[0].pool, 2);       // the copy already at site 2 is reused
  EXPECT_EQ(s.Schedule(in).jobs[0].runner_up, 0);  // then staying at the data's own site
}

}  // namespace
}  // namespace cpn::sched
