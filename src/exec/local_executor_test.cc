#include "src/exec/local_executor.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace cpn {
namespace {

std::string TempDir() {
  auto dir = std::filesystem::temp_directory_path() /
             ("cpn-exec-test-" + std::to_string(::getpid()) + "-" +
              ::testing::UnitTest::GetInstance()->current_test_info()->name());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

// Polls until the process ends; the deadline only guards against a hang.
ExecResult WaitFor(LocalExecutor& ex, const std::string& id) {
  for (int i = 0; i < 2000; ++i) {
    auto r = ex.Poll(id);
    EXPECT_TRUE(r.ok());
    if (r->finished) return *r;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ADD_FAILURE() << "process did not finish";
  return {};
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(LocalExecutor, RunsWithEnvironmentWorkdirAndLog) {
  SystemClock clock;
  LocalExecutor ex(clock);
  std::string dir = TempDir();
  ExecSpec spec{"job-000000000001",
                "echo slots=$CPN_CARD_SLOTS; pwd; echo oops >&2; exit 3",
                {{"CPN_CARD_SLOTS", "0,1"}},
                dir + "/work",
                dir + "/log"};
  ASSERT_TRUE(ex.Start(spec).ok());
  ExecResult r = WaitFor(ex, spec.job_id);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_FALSE(r.signaled);
  EXPECT_EQ(Slurp(dir + "/log"), "slots=0,1\n" + dir + "/work\noops\n");
  EXPECT_EQ(ex.Start(spec).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(ex.Poll("job-ffffffffffff").status().code(), StatusCode::kNotFound);
}

TEST(LocalExecutor, KillStopsTheWholeProcessGroup) {
  SystemClock clock;
  LocalExecutor ex(clock, 200);
  std::string dir = TempDir();
  ExecSpec spec{"job-000000000002", "sleep 30 & sleep 30; echo never", {}, "", dir + "/log"};
  ASSERT_TRUE(ex.Start(spec).ok());
  ASSERT_TRUE(ex.Kill(spec.job_id).ok());
  ExecResult r = WaitFor(ex, spec.job_id);
  EXPECT_TRUE(r.signaled);
  EXPECT_EQ(Slurp(dir + "/log").find("never"), std::string::npos);
}

}  // namespace
}  // namespace cpn
