#include "src/server/platform.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <future>

#include "src/server/api.h"
#include "src/store/sqlite_store.h"
#include "src/testing/fixtures.h"
#include "src/testing/platform_fixture.h"

namespace cpn {
namespace {

class PlatformTest : public ::testing::Test, protected testing::PlatformWorld {
 protected:
  PlatformTest() {}

  void RegisterAll() {
    for (const auto& s : network_.sites()) {
      ASSERT_TRUE(platform_.RegisterSite(SiteToJson(s)).ok());
    }
  }

  static JobSpec Job(int64_t cards = 4) { return TrainingJob("t", cards); }
};

TEST_F(PlatformTest, SubmitPlacesOnTheCheapestAllowedPoolAndHandsItToTheAgent) {
  RegisterAll();
  auto job = platform_.Submit(Job());
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  EXPECT_EQ(job->state, "scheduled");
  EXPECT_EQ(job->pool_id, "cpn:cn.nx/acme/nx-1/gpu");
  EXPECT_DOUBLE_EQ(job->order["total_cny"].get<double>(), 205.0);

  auto reply = platform_.Heartbeat("cpn:cn.nx/acme/nx-1", Json::object());
  ASSERT_TRUE(reply.ok());
  ASSERT_EQ(reply->assignments.size(), 1u);
  EXPECT_EQ(reply->assignments[0].job_id, job->id);
  EXPECT_EQ(reply->assignments[0].cards, 4);
  EXPECT_EQ(reply->assignments[0].run["command"], "true");
  EXPECT_TRUE(platform_.Heartbeat("cpn:cn.bj/acme/bj-1", Json::object())->assignments.empty());

  ASSERT_TRUE(platform_.Report(job->id, {"cpn:cn.nx/acme/nx-1", "running", {}, ""}).ok());
  clock_.AdvanceMs(3'600'000);  // one hour
  ASSERT_TRUE(platform_.Report(job->id, {"cpn:cn.nx/acme/nx-1", "succeeded", 0, ""}).ok());
  // A retried report is harmless; a contradicting one is refused.
  ASSERT_TRUE(platform_.Report(job->id, {"cpn:cn.nx/acme/nx-1", "succeeded", 0, ""}).ok());
  EXPECT_EQ(platform_.Report(job->id, {"cpn:cn.nx/acme/nx-1", "failed", 1, ""}).code(),
            StatusCode::kFailedPrecondition);
  auto events = platform_.Events(job->id);
  ASSERT_EQ(events->size(), 4u);  // submitted, scheduled, running, succeeded
  EXPECT_EQ((*events)[3].state, "succeeded");

  Json view = platform_.JobToJson(*platform_.GetJob(job->id));
  EXPECT_DOUBLE_EQ(view["metered"]["card_hours"].get<double>(), 4.0);
  EXPECT_DOUBLE_EQ(view["metered"]["compute_cny"].get<double>(), 20.0);  // 4 card-h x 5 CNY
  EXPECT_TRUE(view["metered"]["final"].get<bool>());
}

TEST_F(PlatformTest, CapacityIsNeverOvercommittedAndQueuedJobsStartLater) {
  RegisterAll();
  JobSpec j = Job(16);
  auto a = platform_.Submit(j);  // takes all 16 west cards
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->pool_id, "cpn:cn.nx/acme/nx-1/gpu");
  auto b = platform_.Submit(j);  // nothing else in CN has 16 cards
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(b->state, "pending");
  EXPECT_NE(b->reason.find("queued"), std::string::npos);
  ASSERT_TRUE(platform_.Report(a->id, {"cpn:cn.nx/acme/nx-1", "running", {}, ""}).ok());
  ASSERT_TRUE(platform_.Tick().ok());
  EXPECT_EQ(platform_.GetJob(b->id)->state, "pending");
  ASSERT_TRUE(platform_.Report(a->id, {"cpn:cn.nx/acme/nx-1", "succeeded", 0, ""}).ok());
  ASSERT_TRUE(platform_.Tick().ok());
  auto placed = platform_.GetJob(b->id);
  EXPECT_EQ(placed->state, "scheduled");
  EXPECT_NE(placed->reason.find("batch round"), std::string::npos) << placed->reason;
}

TEST_F(PlatformTest, PreemptibleJobsMakeRoomAndAreRequeued) {
  RegisterAll();
  JobSpec low = Job(16);  // the only 16-card pool in CN that fits: west
  low.preemptible = true;
  auto victim = platform_.Submit(low);
  ASSERT_TRUE(victim.ok());
  ASSERT_EQ(victim->pool_id, "cpn:cn.nx/acme/nx-1/gpu");
  ASSERT_TRUE(platform_.Report(victim->id, {"cpn:cn.nx/acme/nx-1", "running", {}, ""}).ok());
  JobSpec urgent = Job(16);
  urgent.priority = 10;
  auto job = platform_.Submit(urgent);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->state, "pending");
  ASSERT_TRUE(platform_.Tick().ok());  // the round asks the site to stop the victim
  EXPECT_TRUE(platform_.GetJob(victim->id)->preempt_requested);
  auto reply = platform_.Heartbeat("cpn:cn.nx/acme/nx-1", Json::object());
  ASSERT_EQ(reply->cancels, std::vector<std::string>{victim->id});
  ASSERT_TRUE(platform_.Report(victim->id, {"cpn:cn.nx/acme/nx-1", "cancelled", 143, ""}).ok());
  auto requeued = platform_.GetJob(victim->id);
  EXPECT_EQ(requeued->state, "pending");
  EXPECT_NE(requeued->reason.find("preempted"), std::string::npos);
  ASSERT_TRUE(platform_.Tick().ok());  // now the urgent job takes the cards
  EXPECT_EQ(platform_.GetJob(job->id)->state, "scheduled");
  EXPECT_EQ(platform_.GetJob(job->id)->pool_id, "cpn:cn.nx/acme/nx-1/gpu");
  EXPECT_EQ(platform_.GetJob(victim->id)->state, "pending");
}

TEST_F(PlatformTest, FairShareFavoursTheTenantThatUsedLessInTheWindow) {
  RegisterAll();
  // Tenant "heavy" ran a long job in the last day.
  JobSpec past = Job(16);
  past.tenant = "heavy";
  auto p = platform_.Submit(past);
  ASSERT_TRUE(platform_.Report(p->id, {p->site_id, "running", {}, ""}).ok());
  clock_.AdvanceMs(10 * 3'600'000);
  ASSERT_TRUE(platform_.Report(p->id, {p->site_id, "succeeded", 0, ""}).ok());
  // Fill the only 16-card pool, then queue one job from each tenant.
  auto blocker = platform_.Submit(Job(16));
  ASSERT_EQ(blocker->state, "scheduled");
  JobSpec heavy = Job(16), light = Job(16);
  heavy.tenant = "heavy";
  light.tenant = "light";
  auto h = platform_.Submit(heavy);  // submitted first
  auto l = platform_.Submit(light);
  ASSERT_EQ(h->state, "pending");
  ASSERT_EQ(l->state, "pending");
  ASSERT_TRUE(platform_.Report(blocker->id, {blocker->site_id, "running", {}, ""}).ok());
  ASSERT_TRUE(platform_.Report(blocker->id, {blocker->site_id, "succeeded", 0, ""}).ok());
  for (const auto& s : network_.sites()) {
    ASSERT_TRUE(platform_.Heartbeat(s.id, Json::object()).ok());  // still alive after 10 h
  }
  ASSERT_TRUE(platform_.Tick().ok());
  EXPECT_EQ(platform_.GetJob(l->id)->state, "scheduled");
  EXPECT_EQ(platform_.GetJob(h->id)->state, "pending");
}

TEST_F(PlatformTest, CompletedJobsTeachTheEstimates) {
  RegisterAll();
  // Catalog: test-gpu trains at 0.5 of peak, so 7.2 EFLOP on 4 cards is 10 h.
  EXPECT_DOUBLE_EQ(platform_.Quote(Job())->at("options")[0]["run_h"].get<double>(), 10.0);
  for (int i = 0; i < 20; ++i) {
    auto job = platform_.Submit(Job());
    ASSERT_TRUE(job.ok());
    const std::string site = job->site_id;
    ASSERT_TRUE(platform_.Report(job->id, {site, "running", {}, ""}).ok());
    clock_.AdvanceMs(20 * 3'600'000);  // the sites really need 20 h: 0.25 of peak
    ASSERT_TRUE(platform_.Report(job->id, {site, "succeeded", 0, ""}).ok());
  }
  double run_h = platform_.Quote(Job())->at("options")[0]["run_h"].get<double>();
  EXPECT_GT(run_h, 17.5);  // (3 x 0.5 + 20 x 0.25) / 23 = 0.283 of peak -> 17.7 h
  EXPECT_LT(run_h, 20.0);
}

TEST_F(PlatformTest, InfeasibleJobsAreRefusedWithReasons) {
  RegisterAll();
  JobSpec j = Job(64);
  auto r = platform_.Submit(j);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("capacity"), std::string::npos) << r.status().message();
}

TEST_F(PlatformTest, SilentSitesGoDownAndGetNoPlacements) {
  RegisterAll();
  clock_.AdvanceMs(20'000);
  ASSERT_TRUE(platform_.Heartbeat("cpn:cn.bj/acme/bj-1", Json::object()).ok());
  ASSERT_TRUE(platform_.Tick().ok());
  EXPECT_EQ(platform_.GetSite("cpn:cn.nx/acme/nx-1")->state, "down");
  auto job = platform_.Submit(Job());
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->pool_id, "cpn:cn.bj/acme/bj-1/gpu");
  // Coming back makes it eligible again.
  ASSERT_TRUE(platform_.Heartbeat("cpn:cn.nx/acme/nx-1", Json::object()).ok());
  EXPECT_EQ(platform_.Submit(Job())->pool_id, "cpn:cn.nx/acme/nx-1/gpu");
}

TEST_F(PlatformTest, CancelBeforeAndAfterPlacement) {
  RegisterAll();
  auto placed = platform_.Submit(Job());
  auto c = platform_.Cancel(placed->id);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->state, "scheduled");
  EXPECT_TRUE(c->cancel_requested);
  auto reply = platform_.Heartbeat("cpn:cn.nx/acme/nx-1", Json::object());
  EXPECT_TRUE(reply->assignments.empty());
  ASSERT_EQ(reply->cancels.size(), 1u);
  ASSERT_TRUE(platform_.Report(placed->id, {"cpn:cn.nx/acme/nx-1", "cancelled", {}, ""}).ok());
  EXPECT_EQ(platform_.Cancel(placed->id).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(platform_.Cancel("job-ffffffffffff").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(platform_.Cancel("bogus").status().code(), StatusCode::kInvalidArgument);
}

TEST_F(PlatformTest, ReportsFromTheWrongSiteAndLogsAreChecked) {
  RegisterAll();
  auto job = platform_.Submit(Job());
  EXPECT_EQ(platform_.Report(job->id, {"cpn:cn.bj/acme/bj-1", "running", {}, ""}).code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(platform_.Report(job->id, {"cpn:cn.nx/acme/nx-1", "exploded", {}, ""}).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(*platform_.AppendLog(job->id, "cpn:cn.nx/acme/nx-1", 0, "hi\n"), 3);
  EXPECT_FALSE(platform_.AppendLog(job->id, "cpn:cn.bj/acme/bj-1", 3, "x").ok());
  EXPECT_EQ(*platform_.ReadLog(job->id, 0, 100), "hi\n");
}

TEST_F(PlatformTest, ResourcesFilterAndMetricsReport) {
  RegisterAll();
  ResourceQuery q;
  q.software = "cann";
  auto r = platform_.Resources(q);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0]["pool"], "cpn:cn.nx/acme/nx-1/npu");
  q = ResourceQuery();
  q.max_price = 4.5;
  EXPECT_EQ(platform_.Resources(q)->size(), 2u);  // npu at 4, sg gpu at 3
  auto text = platform_.Metrics();
  ASSERT_TRUE(text.ok());
  EXPECT_NE(text->find("cpn_pool_free_cards{pool=\"cpn:cn.nx/acme/nx-1/gpu\""), std::string::npos);
  EXPECT_NE(text->find("cpn_sites{state=\"up\"} 3"), std::string::npos);
}

TEST_F(PlatformTest, ProvidersRegisterExplicitlyOrWithTheirFirstSite) {
  RegisterAll();
  auto providers = platform_.ListProviders();
  ASSERT_EQ(providers->size(), 3u);  // one per test site, implied by the site ids
  auto p = platform_.RegisterProvider(
      Json{{"id", "cpn:cn.nx/acme"}, {"name", "ACME Ningxia"}, {"contact", "ops@acme.example"}});
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(platform_.ListProviders()->size(), 3u);
  EXPECT_FALSE(platform_.RegisterProvider(Json{{"id", "cpn:cn.nx/acme/site"}, {"name", "x"}}).ok());
  EXPECT_EQ(platform_.DeregisterProvider("cpn:cn.nx/acme").code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(platform_.DeregisterSite("cpn:cn.nx/acme/nx-1").ok());
  ASSERT_TRUE(platform_.DeregisterProvider("cpn:cn.nx/acme").ok());
  EXPECT_EQ(platform_.ListProviders()->size(), 2u);
}

TEST_F(PlatformTest, DeregisteredSitesDisappear) {
  RegisterAll();
  ASSERT_TRUE(platform_.DeregisterSite("cpn:cn.nx/acme/nx-1").ok());
  EXPECT_EQ(platform_.ListSites()->size(), 2u);
  EXPECT_EQ(platform_.DeregisterSite("cpn:cn.nx/acme/nx-1").code(), StatusCode::kNotFound);
  EXPECT_EQ(platform_.Heartbeat("cpn:cn.nx/acme/nx-1", Json::object()).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(platform_.Submit(Job())->pool_id, "cpn:cn.bj/acme/bj-1/gpu");
}

TEST_F(PlatformTest, AnUnwaitedSubmissionIsAcknowledgedOnceDurable) {
  RegisterAll();
  uint64_t seq = 0;
  bool replayed = false;
  auto job = platform_.SubmitNoWait(Job(), "key-1", &replayed, nullptr, &seq);
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  EXPECT_FALSE(replayed);
  std::promise<Status> durable;
  platform_.WhenDurable(seq, [&](Status s) { durable.set_value(s); });
  auto acked = durable.get_future();
  ASSERT_EQ(acked.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_TRUE(acked.get().ok());
  auto stored = store_->GetJob(job->id);
  ASSERT_TRUE(stored.ok() && stored->has_value());  // on disk when acknowledged
  // Already durable: called at once, on the caller's thread.
  bool now = false;
  platform_.WhenDurable(seq, [&](Status s) { now = s.ok(); });
  EXPECT_TRUE(now);
  // A retry with the key replays the job, to be acknowledged like the first.
  uint64_t replay_seq = 0;
  auto again = platform_.SubmitNoWait(Job(), "key-1", &replayed, nullptr, &replay_seq);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(replayed);
  EXPECT_EQ(again->id, job->id);
  EXPECT_GE(replay_seq, seq);
}

// A platform over a database file that another connection then breaks
// (drops a table), so that the next commit fails.
class PlatformStoreFailure : public ::testing::Test {
 protected:
  PlatformStoreFailure() {
    namespace fs = std::filesystem;
    const fs::path dir =
        fs::temp_directory_path() /
        fmt::format("cpn-commit-fail-{}-{}", ::getpid(),
                    ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
    db_ = (dir / "cpn.db").string();
    store_ = std::move(SqliteStore::Open(db_)).value();
    platform_ = std::make_unique<Platform>(*store_, clock_, catalog_, network_,
                                           [this] { return fmt::format("job-{:012x}", ++next_); });
  }
  void SetUp() override {
    for (const auto& s : network_.sites()) {
      ASSERT_TRUE(platform_->RegisterSite(SiteToJson(s)).ok());
    }
    ASSERT_TRUE(platform_->Submit(testing::PlatformWorld::TrainingJob()).ok());
    sqlite3* other = nullptr;
    ASSERT_EQ(sqlite3_open(db_.c_str(), &other), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(other, "DROP TABLE job_events", nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(other);
  }

  FakeClock clock_;
  Catalog catalog_ = testing::TestCatalog();
  Topology network_ = testing::TestTopology(catalog_);
  std::string db_;
  std::unique_ptr<SqliteStore> store_;
  int next_ = 0;
  std::unique_ptr<Platform> platform_;
};

// A commit that fails fails every write waiting for it, and the platform
// then refuses changes rather than acknowledge what it could not store.
TEST_F(PlatformStoreFailure, AFailedCommitFailsItsWaitersAndLaterChanges) {
  uint64_t seq = 0;
  auto job =
      platform_->SubmitNoWait(testing::PlatformWorld::TrainingJob(), "", nullptr, nullptr, &seq);
  ASSERT_TRUE(job.ok());  // accepted in memory, not yet acknowledged
  std::promise<Status> durable;
  platform_->WhenDurable(seq, [&](Status s) { durable.set_value(s); });
  Status outcome = durable.get_future().get();
  EXPECT_EQ(outcome.code(), StatusCode::kUnavailable);
  EXPECT_NE(outcome.message().find("could not write to its store"), std::string::npos)
      << outcome.ToString();
  auto later = platform_->Submit(testing::PlatformWorld::TrainingJob());
  EXPECT_EQ(later.status().code(), StatusCode::kUnavailable);
  bool failed_at_once = false;
  platform_->WhenDurable(seq + 1, [&](Status s) { failed_at_once = !s.ok(); });
  EXPECT_TRUE(failed_at_once);
}

// Through the API the job's 201 is never sent: the error goes out instead.
TEST_F(PlatformStoreFailure, AnApiSubmissionWhoseCommitFailsGetsTheErrorNotA201) {
  Api api(*platform_);
  net::HttpRequest r;
  r.method = "POST";
  r.target = "/v1/jobs";
  r.headers["content-type"] = "application/json";
  r.body = JobSpecToJson(testing::PlatformWorld::TrainingJob()).dump();
  net::HttpResponse first = api.Handle(r);
  ASSERT_TRUE(first.send_after);  // accepted, waiting for its commit
  net::HttpResponse sent = net::AwaitSendAfter(std::move(first));
  EXPECT_EQ(sent.status, 503);
  Json error = Json::parse(sent.body)["error"];
  EXPECT_EQ(error["code"], "unavailable");
  EXPECT_NE(error["message"].get<std::string>().find("could not write to its store"),
            std::string::npos)
      << sent.body;
}

}  // namespace
}  // namespace cpn
