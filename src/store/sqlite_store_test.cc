#include "src/store/sqlite_store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

namespace cpn {
namespace {

std::string TempDb() {
  auto dir = std::filesystem::temp_directory_path() /
             ("cpn-store-test-" + std::to_string(::getpid()) + "-" +
              ::testing::UnitTest::GetInstance()->current_test_info()->name());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return (dir / "cpn.db").string();
}

JobRecord Job(const std::string& id, const std::string& tenant) {
  JobRecord j;
  j.id = id;
  j.tenant = tenant;
  j.spec = {{"name", "x"}};
  j.created_ms = 1;
  return j;
}

TEST(SqliteStore, JobsAndEventsSurviveReopen) {
  std::string path = TempDb();
  {
    auto s = SqliteStore::Open(path);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    ASSERT_TRUE((*s)->CreateJob(Job("job-000000000001", "a"),
                                {0, "job-000000000001", 1, "pending", "submitted"})
                    .ok());
    JobRecord j = Job("job-000000000001", "a");
    j.state = "running";
    j.exit_code = 0;
    ASSERT_TRUE((*s)->UpdateJob(j, JobEvent{0, j.id, 2, "running", "started"}).ok());
    EXPECT_EQ((*s)->CreateJob(Job("job-000000000001", "a"), JobEvent{}).code(),
              StatusCode::kAlreadyExists);
  }
  auto s = SqliteStore::Open(path);
  ASSERT_TRUE(s.ok());
  auto j = (*s)->GetJob("job-000000000001");
  ASSERT_TRUE(j.ok() && j->has_value());
  EXPECT_EQ((*j)->state, "running");
  EXPECT_EQ((*j)->exit_code, 0);
  auto ev = (*s)->ListEvents("job-000000000001");
  ASSERT_TRUE(ev.ok());
  ASSERT_EQ(ev->size(), 2u);
  EXPECT_EQ((*ev)[1].reason, "started");
  EXPECT_FALSE((*s)->GetJob("job-ffffffffffff")->has_value());
  EXPECT_EQ((*s)->UpdateJob(Job("job-ffffffffffff", "a"), std::nullopt).code(),
            StatusCode::kNotFound);
}

TEST(SqliteStore, LastJobIdIsTheGreatest) {
  auto s = SqliteStore::Open(TempDb());
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(*(*s)->LastJobId(), "");
  for (const char* id : {"job-00000000000a", "job-0000000000ff", "job-000000000010"}) {
    ASSERT_TRUE((*s)->CreateJob(Job(id, "a"), JobEvent{0, id, 1, "pending", "submitted"}).ok());
  }
  EXPECT_EQ(*(*s)->LastJobId(), "job-0000000000ff");
}

TEST(SqliteStore, ListingPagesAndFilters) {
  auto s = SqliteStore::Open(TempDb());
  ASSERT_TRUE(s.ok());
  for (int i = 0; i < 7; ++i) {
    std::string id = "job-00000000000" + std::to_string(i);
    ASSERT_TRUE((*s)->CreateJob(Job(id, i % 2 ? "odd" : "even"), {0, id, 1, "pending", ""}).ok());
  }
  JobFilter f;
  f.limit = 3;
  auto page1 = (*s)->ListJobs(f);
  ASSERT_EQ(page1->size(), 3u);
  f.after_id = page1->back().id;
  auto page2 = (*s)->ListJobs(f);
  ASSERT_EQ(page2->size(), 3u);
  EXPECT_EQ(page2->front().id, "job-000000000003");
  f = JobFilter();
  f.tenant = "odd";
  EXPECT_EQ((*s)->ListJobs(f)->size(), 3u);
  EXPECT_EQ((*s)->ListActiveJobs()->size(), 7u);
}

TEST(SqliteStore, LogAppendsAreIdempotentAndReadable) {
  auto s = SqliteStore::Open(TempDb());
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE(
      (*s)->CreateJob(Job("job-000000000001", "a"), {0, "job-000000000001", 1, "pending", ""})
          .ok());
  EXPECT_EQ(*(*s)->AppendLog("job-000000000001", 0, "hello "), 6);
  EXPECT_EQ(*(*s)->AppendLog("job-000000000001", 0, "hello "), 6);     // retried
  EXPECT_EQ(*(*s)->AppendLog("job-000000000001", 3, "lo world"), 11);  // overlapping
  EXPECT_EQ((*s)->AppendLog("job-000000000001", 20, "gap").status().code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(*(*s)->ReadLog("job-000000000001", 0, 1000), "hello world");
  EXPECT_EQ(*(*s)->ReadLog("job-000000000001", 8, 1000), "rld");
  EXPECT_EQ(*(*s)->ReadLog("job-000000000001", 2, 4), "llo ");
  EXPECT_EQ((*(*s)->GetJob("job-000000000001"))->log_bytes, 11);
  EXPECT_EQ((*s)->AppendLog("job-ffffffffffff", 0, "x").status().code(), StatusCode::kNotFound);
}

TEST(SqliteStore, SitesUpsert) {
  auto s = SqliteStore::Open(TempDb());
  ASSERT_TRUE(s.ok());
  SiteRecord r;
  r.id = "cpn:cn.bj/a/b";
  r.site = {{"id", r.id}};
  ASSERT_TRUE((*s)->PutSite(r).ok());
  r.state = "down";
  ASSERT_TRUE((*s)->PutSite(r).ok());
  auto all = (*s)->ListSites();
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ(all->front().state, "down");
}

}  // namespace
}  // namespace cpn
