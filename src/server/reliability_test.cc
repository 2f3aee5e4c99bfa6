// Failure handling in the platform: site leases, rescheduling with an attempt
// limit, reconciliation with sites that come back, idempotent submission,
// draining.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <mutex>
#include <set>
#include <thread>

#include "src/server/platform.h"
#include "src/store/sqlite_store.h"
#include "src/testing/fixtures.h"
#include "src/testing/platform_fixture.h"

namespace cpn {
namespace {

constexpr const char* kBj = "cpn:cn.bj/acme/bj-1";
constexpr const char* kNx = "cpn:cn.nx/acme/nx-1";
constexpr const char* kSg = "cpn:sg.sg/acme/sg-1";

// The shared training job without a dataset to move: nx-1 first (cheaper),
// bj-1 next; never sg-1.
JobSpec TrainJob() {
  JobSpec j = testing::PlatformWorld::TrainingJob();
  j.dataset_gb = 0;
  return j;
}

class ReliabilityTest : public ::testing::Test {
 protected:
  ReliabilityTest()
      : catalog_(testing::TestCatalog()),
        network_(testing::TestTopology(catalog_)),
        store_(std::move(SqliteStore::Open(":memory:")).value()) {}

  std::unique_ptr<Platform> Make(PlatformOptions o = {}) {
    return std::make_unique<Platform>(
        *store_, clock_, catalog_, network_,
        [this] { return fmt::format("job-{:012x}", ++next_id_); }, o);
  }
  void RegisterAll(Platform& p) {
    for (const auto& s : network_.sites()) ASSERT_TRUE(p.RegisterSite(SiteToJson(s)).ok());
  }
  JobSpec Job() { return TrainJob(); }
  static Json Running(std::initializer_list<std::string> ids) {
    Json active = Json::array();
    for (const auto& id : ids) active.push_back(id);
    return Json{{"active_jobs", active}};
  }
  std::vector<std::string> States(Platform& p, const std::string& id) {
    std::vector<std::string> out;
    auto events = p.Events(id);
    EXPECT_TRUE(events.ok());
    if (!events.ok()) return out;
    for (const auto& e : *events) out.push_back(e.state);
    return out;
  }

  FakeClock clock_;
  Catalog catalog_;
  Topology network_;
  std::unique_ptr<SqliteStore> store_;
  int next_id_ = 0;
};

TEST_F(ReliabilityTest, LostSiteJobsRunElsewhereAndTheReturningSiteIsReconciled) {
  auto p = Make();
  RegisterAll(*p);
  auto job = p->Submit(Job());
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  ASSERT_EQ(job->site_id, kNx);
  ASSERT_EQ(p->Heartbeat(kNx, Json::object())->assignments.size(), 1u);
  ASSERT_TRUE(p->Report(job->id, {kNx, "running", {}, ""}).ok());

  // nx-1 falls silent; the others keep their leases.
  clock_.AdvanceMs(10'000);
  ASSERT_TRUE(p->Heartbeat(kBj, Json::object()).ok());
  ASSERT_TRUE(p->Heartbeat(kSg, Json::object()).ok());
  clock_.AdvanceMs(6'000);
  ASSERT_TRUE(p->Tick().ok());
  EXPECT_EQ(p->GetSite(kNx)->state, "down");
  auto moved = p->GetJob(job->id);
  ASSERT_TRUE(moved.ok());
  EXPECT_EQ(moved->state, "scheduled");  // placed again in the same tick
  EXPECT_EQ(moved->site_id, kBj);
  EXPECT_EQ(moved->attempts, 2);
  auto events = p->Events(job->id).value();
  bool said = false;
  for (const auto& e : events) {
    said |= e.state == "pending" &&
            e.reason.find(
                "site cpn:cn.nx/acme/nx-1 lost its lease (no heartbeat for 15 s) "
                "during attempt 1 of 3; requeued") != std::string::npos;
  }
  EXPECT_TRUE(said);

  // nx-1 comes back still running it: it is told to stop, and its late
  // report is refused; bj-1's run is the one that counts.
  auto back = p->Heartbeat(kNx, Running({job->id}));
  ASSERT_TRUE(back.ok());
  ASSERT_EQ(back->cancels.size(), 1u);
  EXPECT_EQ(back->cancels[0], job->id);
  EXPECT_EQ(p->Report(job->id, {kNx, "cancelled", {}, ""}).code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(p->Report(job->id, {kBj, "running", {}, ""}).ok());
  ASSERT_TRUE(p->Report(job->id, {kBj, "succeeded", 0, ""}).ok());
  EXPECT_EQ(p->GetJob(job->id)->state, "succeeded");
  EXPECT_EQ(States(*p, job->id),
            (std::vector<std::string>{"pending", "scheduled", "running", "pending", "scheduled",
                                      "running", "succeeded"}));
  // bj-1 still listing it later is told to stop too (it has ended).
  EXPECT_EQ(p->Heartbeat(kBj, Running({job->id}))->cancels.size(), 1u);
}

TEST_F(ReliabilityTest, AResultFromASiteThatCameBackIsAcceptedOnce) {
  auto p = Make();
  RegisterAll(*p);
  auto job = p->Submit(Job());
  ASSERT_TRUE(job.ok());
  ASSERT_TRUE(p->Report(job->id, {kNx, "running", {}, ""}).ok());
  // Every site falls silent: nothing can take the job meanwhile.
  clock_.AdvanceMs(16'000);
  ASSERT_TRUE(p->Tick().ok());
  ASSERT_EQ(p->GetJob(job->id)->state, "pending");
  // nx-1 returns with the job finished while it was away.
  ASSERT_TRUE(p->Heartbeat(kNx, Json::object()).ok());
  ASSERT_TRUE(p->Report(job->id, {kNx, "succeeded", 0, "exit code 0"}).ok());
  auto done = p->GetJob(job->id);
  EXPECT_EQ(done->state, "succeeded");
  EXPECT_EQ(done->site_id, kNx);
  EXPECT_EQ(done->pool_id, "cpn:cn.nx/acme/nx-1/gpu");
  EXPECT_NE(done->reason.find("reported after the site came back; result accepted"),
            std::string::npos);
  // Once: a repeat is harmless, a different outcome is refused, and the job
  // is not placed again.
  EXPECT_TRUE(p->Report(job->id, {kNx, "succeeded", 0, ""}).ok());
  EXPECT_EQ(p->Report(job->id, {kNx, "failed", 1, ""}).code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(p->Tick().ok());
  EXPECT_EQ(p->GetJob(job->id)->state, "succeeded");
  int terminal = 0;
  for (const auto& s : States(*p, job->id)) terminal += s == "succeeded" || s == "failed";
  EXPECT_EQ(terminal, 1);
}

TEST_F(ReliabilityTest, AJobARestartedAgentNoLongerHoldsIsPlacedAgain) {
  auto p = Make();
  RegisterAll(*p);
  auto job = p->Submit(Job());
  ASSERT_TRUE(job.ok());
  ASSERT_TRUE(p->Report(job->id, {kNx, "running", {}, ""}).ok());
  // An older agent that lists nothing changes nothing; one that lists its
  // jobs and lacks this one has lost it.
  ASSERT_TRUE(p->Heartbeat(kNx, Json::object()).ok());
  EXPECT_EQ(p->GetJob(job->id)->state, "running");
  ASSERT_TRUE(p->Heartbeat(kNx, Running({job->id})).ok());
  EXPECT_EQ(p->GetJob(job->id)->state, "running");
  ASSERT_TRUE(p->Heartbeat(kNx, Running({})).ok());
  auto lost = p->GetJob(job->id);
  EXPECT_EQ(lost->state, "pending");
  EXPECT_NE(lost->reason.find("site cpn:cn.nx/acme/nx-1 restarted and no longer runs it during "
                              "attempt 1 of 3; requeued"),
            std::string::npos)
      << lost->reason;
  ASSERT_TRUE(p->Tick().ok());
  EXPECT_EQ(p->GetJob(job->id)->state, "scheduled");
  EXPECT_EQ(p->GetJob(job->id)->attempts, 2);
}

TEST_F(ReliabilityTest, AJobLostTooOftenFailsWithTheReason) {
  PlatformOptions o;
  o.max_attempts = 1;
  auto p = Make(o);
  RegisterAll(*p);
  auto job = p->Submit(Job());
  ASSERT_TRUE(job.ok());
  clock_.AdvanceMs(16'000);
  ASSERT_TRUE(p->Tick().ok());
  auto failed = p->GetJob(job->id);
  EXPECT_EQ(failed->state, "failed");
  EXPECT_NE(failed->reason.find("during attempt 1 of 1; giving up"), std::string::npos)
      << failed->reason;
}

TEST_F(ReliabilityTest, AfterARestartSitesGetAFullLease) {
  auto p = Make();
  RegisterAll(*p);
  auto job = p->Submit(Job());
  ASSERT_TRUE(job.ok());
  // The server is down for a minute; the sites' last heartbeats are old.
  p.reset();
  clock_.AdvanceMs(60'000);
  auto restarted = Make();
  ASSERT_TRUE(restarted->Tick().ok());
  EXPECT_EQ(restarted->GetSite(kNx)->state, "up");
  EXPECT_EQ(restarted->GetJob(job->id)->state, "scheduled");
  // A site that stays silent after the restart does lose its lease.
  clock_.AdvanceMs(16'000);
  ASSERT_TRUE(restarted->Tick().ok());
  EXPECT_EQ(restarted->GetSite(kNx)->state, "down");
}

TEST_F(ReliabilityTest, IdempotencyKeysMakeRetriesSafe) {
  auto p = Make();
  RegisterAll(*p);
  bool replayed = true;
  auto first = p->Submit(Job(), "key-1", &replayed);
  ASSERT_TRUE(first.ok());
  EXPECT_FALSE(replayed);
  auto again = p->Submit(Job(), "key-1", &replayed);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(replayed);
  EXPECT_EQ(again->id, first->id);
  // Across a restart too: the key is stored with the job.
  p.reset();
  auto restarted = Make();
  auto third = restarted->Submit(Job(), "key-1", &replayed);
  ASSERT_TRUE(third.ok());
  EXPECT_TRUE(replayed);
  EXPECT_EQ(third->id, first->id);
  // The same key for a different job is an error; another tenant's key is
  // its own.
  JobSpec other = Job();
  other.cards = 2;
  auto clash = restarted->Submit(other, "key-1");
  ASSERT_FALSE(clash.ok());
  EXPECT_NE(clash.status().message().find("was used for " + first->id), std::string::npos);
  other = Job();
  other.tenant = "u";
  auto theirs = restarted->Submit(other, "key-1", &replayed);
  ASSERT_TRUE(theirs.ok());
  EXPECT_FALSE(replayed);
  EXPECT_NE(theirs->id, first->id);
  EXPECT_EQ(restarted->ListJobs({}).value().size(), 2u);
  EXPECT_FALSE(restarted->Submit(Job(), std::string(200, 'k')).ok());
}

TEST_F(ReliabilityTest, ADrainedSiteTakesNoNewJobsButFinishesItsOwn) {
  auto p = Make();
  RegisterAll(*p);
  auto running = p->Submit(Job());
  ASSERT_TRUE(running.ok());
  ASSERT_EQ(running->site_id, kNx);
  ASSERT_TRUE(p->Report(running->id, {kNx, "running", {}, ""}).ok());
  auto drained = p->SetDrained(kNx, true);
  ASSERT_TRUE(drained.ok());
  EXPECT_TRUE(drained->drained);
  // Heartbeats keep it drained.
  ASSERT_TRUE(p->Heartbeat(kNx, Json::object()).ok());
  EXPECT_TRUE(p->GetSite(kNx)->drained);
  auto next = p->Submit(Job());
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->site_id, kBj);
  ASSERT_TRUE(p->Report(running->id, {kNx, "succeeded", 0, ""}).ok());
  ASSERT_TRUE(p->SetDrained(kNx, false).ok());
  auto after = p->Submit(Job());
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->site_id, kNx);
  EXPECT_EQ(p->SetDrained("cpn:cn.xx/no/where", true).status().code(), StatusCode::kNotFound);
}

TEST_F(ReliabilityTest, AJobWaitsForItsDatasetAndFailsAfterThreeFailedStagings) {
  auto p = Make();
  RegisterAll(*p);
  JobSpec spec = Job();
  spec.dataset_path = "corpus/v1";
  auto job = p->Submit(spec);
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  ASSERT_EQ(job->site_id, kNx);  // away from its data at bj-1
  EXPECT_EQ(job->order["staging"]["state"], "waiting");
  // nx-1 advertises its transfer service; it gets no assignment yet.
  Json nx_telemetry{{"transfer", {{"address", "10.0.0.2"}, {"port", 7070}}}};
  EXPECT_TRUE(p->Heartbeat(kNx, nx_telemetry)->assignments.empty());
  // bj-1 is asked to copy it there.
  auto bj = p->Heartbeat(kBj, Json::object());
  ASSERT_TRUE(bj.ok());
  ASSERT_EQ(bj->stagings.size(), 1u);
  EXPECT_EQ(bj->stagings[0].path, "corpus/v1");
  EXPECT_EQ(bj->stagings[0].dest_address, "10.0.0.2");
  EXPECT_EQ(bj->stagings[0].dest_path, "staged/cn.bj_acme_bj-1/corpus/v1");
  // Reports from the wrong site, or for another destination, are refused.
  StagingReport wrong{kSg, "", "done", "", 1, 1, 0, 0.1};
  EXPECT_EQ(p->ReportStaging(job->id, wrong).code(), StatusCode::kFailedPrecondition);
  StagingReport stale{kBj, kSg, "done", "", 1, 1, 0, 0.1};
  EXPECT_EQ(p->ReportStaging(job->id, stale).code(), StatusCode::kFailedPrecondition);
  // Two failures: asked again each time; the third fails the job.
  StagingReport failed{kBj, kNx, "failed", "no route to host", 0, 0, 0, 0};
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(p->ReportStaging(job->id, failed).ok());
    EXPECT_EQ(p->GetJob(job->id)->state, "scheduled");
    EXPECT_EQ(p->Heartbeat(kBj, Json::object())->stagings.size(), 1u);
  }
  ASSERT_TRUE(p->ReportStaging(job->id, failed).ok());
  auto ended = p->GetJob(job->id);
  EXPECT_EQ(ended->state, "failed");
  EXPECT_NE(ended->reason.find("failed 3 times: no route to host"), std::string::npos)
      << ended->reason;

  // Done: the job is handed out, with where its data is.
  auto second = p->Submit(spec);
  ASSERT_TRUE(second.ok());
  StagingReport done{kBj, kNx, "done", "", 4096, 0, 1, 0.2};
  ASSERT_TRUE(p->ReportStaging(second->id, done).ok());
  auto reply = p->Heartbeat(kNx, nx_telemetry);
  ASSERT_EQ(reply->assignments.size(), 1u);
  EXPECT_EQ(reply->assignments[0].dataset_dir, "staged/cn.bj_acme_bj-1/corpus/v1");
  EXPECT_EQ(p->GetJob(second->id)->order["staging"]["bytes_total"], 4096);
}

}  // namespace
}  // namespace cpn

namespace cpn {
namespace {

// Group commit: submissions from many threads share transactions; every
// acknowledged job is in the database when it is reopened, and a key sent
// by many clients at once creates one job.
TEST(GroupCommitTest, ConcurrentSubmissionsAreAllDurableAndKeysStayUnique) {
  const std::string path =
      ::testing::TempDir() + fmt::format("/cpn-group-commit-{}.db", ::getpid());
  std::remove(path.c_str());
  Catalog catalog = testing::TestCatalog();
  Topology network = testing::TestTopology(catalog);
  std::atomic<int> next_id{0};
  std::set<std::string> acknowledged;
  std::set<std::string> same_key_ids;
  {
    auto store = SqliteStore::Open(path);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    FakeClock clock;
    Platform p(**store, clock, catalog, network,
               [&] { return fmt::format("job-{:012x}", ++next_id); });
    for (const auto& s : network.sites()) ASSERT_TRUE(p.RegisterSite(SiteToJson(s)).ok());
    JobSpec job = TrainJob();
    job.name = "small";
    job.cards = 1;
    job.work_fp16_eflop = 0.1;
    std::mutex mu;
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < 40; ++i) {
          auto r = p.Submit(job, fmt::format("k-{}-{}", t, i));
          auto same = p.Submit(job, "one-key");
          std::lock_guard lock(mu);
          if (r.ok()) acknowledged.insert(r->id);
          if (same.ok()) same_key_ids.insert(same->id);
          if (t % 2 == 0) (void)p.Tick();  // rounds interleave with submissions
        }
      });
    }
    for (auto& t : threads) t.join();
  }
  EXPECT_EQ(acknowledged.size(), 320u);
  EXPECT_EQ(same_key_ids.size(), 1u);
  auto reopened = SqliteStore::Open(path);
  ASSERT_TRUE(reopened.ok());
  JobFilter all;
  all.limit = 10'000;
  auto jobs = (*reopened)->ListJobs(all);
  ASSERT_TRUE(jobs.ok());
  EXPECT_EQ(jobs->size(), 321u);
  for (const auto& id : acknowledged) {
    auto j = (*reopened)->GetJob(id);
    ASSERT_TRUE(j.ok() && j->has_value()) << id;
    auto events = (*reopened)->ListEvents(id);
    ASSERT_TRUE(events.ok());
    EXPECT_GE(events->size(), 1u);
    EXPECT_EQ(events->front().state, "pending");
  }
  std::remove(path.c_str());
}

}  // namespace
}  // namespace cpn
