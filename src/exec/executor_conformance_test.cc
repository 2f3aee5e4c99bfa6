// One conformance suite for every executor: what the agent relies on, run
// against the local executor and against a real Slurm cluster (started by
// scripts/start-slurm.sh, as scripts/test.sh does), plus what only Slurm does.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <thread>

#include "src/core/clock.h"
#include "src/exec/command.h"
#include "src/exec/local_executor.h"
#include "src/exec/slurm_executor.h"

namespace cpn {
namespace {

std::string TempDir() {
  auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = std::string(info->test_suite_name()) + "-" + info->name();
  for (char& c : name) {
    if (c == '/') c = '-';
  }
  auto dir = std::filesystem::temp_directory_path() /
             ("cpn-exec-" + std::to_string(::getpid()) + "-" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

constexpr const char* kPool = "cpn:cn.nx/acme/nx-1/gpu";

struct Harness {
  SystemClock clock;
  SystemCommandRunner runner;
  std::unique_ptr<Executor> executor;
  int64_t wait_ms = 10'000;
};

using Factory = std::function<std::unique_ptr<Harness>()>;

std::unique_ptr<Harness> Local() {
  auto h = std::make_unique<Harness>();
  h->executor = std::make_unique<LocalExecutor>(h->clock, 300);
  return h;
}

std::unique_ptr<Harness> Slurm() {
  auto h = std::make_unique<Harness>();
  h->executor = std::make_unique<SlurmExecutor>(
      h->runner, std::map<std::string, std::string>{
                     {kPool, "gpu"}, {"small-pool", "small"}, {"bad-pool", "no-such-partition"}});
  h->wait_ms = 90'000;  // Slurm schedules every second and reports on its own time
  return h;
}

ExecResult WaitFor(Harness& h, const std::string& id) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(h.wait_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    auto r = h.executor->Poll(id);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) return {};
    if (r->finished) return *r;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ADD_FAILURE() << id << " did not finish";
  return {};
}

ExecSpec Spec(const std::string& id, const std::string& command, const std::string& dir) {
  ExecSpec s;
  s.job_id = id;
  s.command = command;
  s.env = {{"CPN_JOB_ID", id}, {"ODD", "a,b='c' $HOME"}};
  s.workdir = dir + "/work";
  s.log_path = dir + "/logs/" + id + ".log";
  s.pool_id = kPool;
  s.cards = 1;
  return s;
}

class ExecutorConformance : public ::testing::TestWithParam<std::pair<const char*, Factory>> {};

TEST_P(ExecutorConformance, RunsTheCommandWithItsEnvironmentWorkdirAndLog) {
  auto h = GetParam().second();
  std::string dir = TempDir();
  ExecSpec spec = Spec("job-00000000c0f1",
                       "echo id=$CPN_JOB_ID; echo \"odd=$ODD\"; pwd; "
                       "echo to-stderr >&2; exit 3",
                       dir);
  ASSERT_TRUE(h->executor->Start(spec).ok()) << h->executor->Start(spec).ToString();
  ExecResult r = WaitFor(*h, spec.job_id);
  EXPECT_TRUE(r.finished);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_FALSE(r.signaled);
  std::string log = Slurp(spec.log_path);
  EXPECT_NE(log.find("id=job-00000000c0f1\n"), std::string::npos) << log;
  EXPECT_NE(log.find("odd=a,b='c' $HOME\n"), std::string::npos) << log;
  EXPECT_NE(log.find(dir + "/work\n"), std::string::npos) << log;
  EXPECT_NE(log.find("to-stderr\n"), std::string::npos) << log;
  EXPECT_EQ(h->executor->Start(spec).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(h->executor->Poll("job-ffffffffffff").status().code(), StatusCode::kNotFound);
}

TEST_P(ExecutorConformance, ASucceedingJobEndsWithExitCodeZero) {
  auto h = GetParam().second();
  std::string dir = TempDir();
  ExecSpec spec = Spec("job-00000000c0f2", "true", dir);
  ASSERT_TRUE(h->executor->Start(spec).ok()) << h->executor->Start(spec).ToString();
  ExecResult r = WaitFor(*h, spec.job_id);
  EXPECT_TRUE(r.finished);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_FALSE(r.signaled);
  EXPECT_TRUE(r.detail.empty()) << r.detail;
}

TEST_P(ExecutorConformance, KillStopsARunningJob) {
  auto h = GetParam().second();
  std::string dir = TempDir();
  ExecSpec spec = Spec("job-00000000c0f3", "echo started; sleep 60; echo never", dir);
  ASSERT_TRUE(h->executor->Start(spec).ok()) << h->executor->Start(spec).ToString();
  // Let it start, then stop it.
  for (int i = 0; i < 500 && Slurp(spec.log_path).find("started") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // It printed, so it runs, and the executor says so.
  auto now = h->executor->Poll(spec.job_id);
  ASSERT_TRUE(now.ok());
  EXPECT_TRUE(now->running);
  EXPECT_FALSE(now->finished);
  ASSERT_TRUE(h->executor->Kill(spec.job_id).ok());
  ExecResult r = WaitFor(*h, spec.job_id);
  EXPECT_TRUE(r.finished);
  EXPECT_TRUE(r.signaled || r.detail == "CANCELLED") << r.exit_code << " " << r.detail;
  EXPECT_EQ(Slurp(spec.log_path).find("never"), std::string::npos);
}

// A job past its time limit is stopped and says TIMEOUT. Run against the
// local executor; Slurm enforces limits in whole minutes on a 30-second
// timer, so against Slurm the limit is checked where it is handed over
// (TheTimeLimitReachesSlurm) and the TIMEOUT state in Poll's mapping.
TEST(LocalExecutor, ATimeLimitStopsTheJobWithTimeout) {
  auto h = Local();
  std::string dir = TempDir();
  ExecSpec spec = Spec("job-00000000c0f7", "echo started; sleep 60; echo never", dir);
  spec.time_limit_s = 1;
  ASSERT_TRUE(h->executor->Start(spec).ok());
  ExecResult r = WaitFor(*h, spec.job_id);
  EXPECT_TRUE(r.finished);
  EXPECT_EQ(r.detail, "TIMEOUT");
  EXPECT_TRUE(r.signaled);
  EXPECT_EQ(Slurp(spec.log_path).find("never"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Executors, ExecutorConformance,
                         ::testing::Values(std::make_pair("local", Factory(Local)),
                                           std::make_pair("slurm", Factory(Slurm))),
                         [](const auto& info) { return std::string(info.param.first); });

TEST(SlurmExecutor, SlurmPicksTheDevicesForTheCards) {
  auto h = Slurm();
  std::string dir = TempDir();
  ExecSpec spec = Spec("job-00000000c0f4", "echo devices=$CUDA_VISIBLE_DEVICES", dir);
  spec.cards = 2;
  ASSERT_TRUE(h->executor->Start(spec).ok()) << h->executor->Start(spec).ToString();
  ExecResult r = WaitFor(*h, spec.job_id);
  EXPECT_EQ(r.exit_code, 0);
  // Two of the node's four fake GPUs (which ones depends on other jobs).
  std::string log = Slurp(spec.log_path);
  size_t at = log.find("devices=");
  ASSERT_NE(at, std::string::npos) << log;
  std::string devices = log.substr(at + 8, 4);  // "a,b\n"
  EXPECT_TRUE(devices.size() == 4 && std::isdigit(devices[0]) && devices[1] == ',' &&
              std::isdigit(devices[2]) && devices[0] != devices[2] && devices[3] == '\n')
      << log;
}

TEST(SlurmExecutor, WhatSlurmRefusesIsAClearError) {
  auto h = Slurm();
  std::string dir = TempDir();
  ExecSpec spec = Spec("job-00000000c0f5", "true", dir);
  spec.pool_id = "bad-pool";
  Status s = h->executor->Start(spec);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("Slurm refused the job: "), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("partition"), std::string::npos) << s.message();
  spec.job_id = "job-00000000c0f6";
  spec.pool_id = "small-pool";
  spec.cards = 99;  // a node has 4
  s = h->executor->Start(spec);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("Requested node configuration is not available"), std::string::npos)
      << s.message();
  spec.pool_id = "cpn:cn.xx/none/none/p";
  EXPECT_EQ(h->executor->Start(spec).code(), StatusCode::kFailedPrecondition);
}

TEST(SlurmExecutor, TheTimeLimitReachesSlurm) {
  auto h = Slurm();
  auto* slurm = static_cast<SlurmExecutor*>(h->executor.get());
  std::string dir = TempDir();
  ExecSpec spec = Spec("job-00000000c0f8", "sleep 30", dir);
  spec.time_limit_s = 90;
  ASSERT_TRUE(h->executor->Start(spec).ok());
  auto shown = h->runner.Run({"scontrol", "show", "job", "-o", slurm->SlurmId(spec.job_id)});
  ASSERT_TRUE(shown.ok());
  // 90 s, in Slurm's whole minutes.
  EXPECT_NE(shown->out.find("TimeLimit=00:02:00"), std::string::npos) << shown->out;
  ASSERT_TRUE(h->executor->Kill(spec.job_id).ok());
  WaitFor(*h, spec.job_id);
}

// An agent restarted while its jobs sit in Slurm takes them back: a new
// executor finds the job by its name and can follow and cancel it.
TEST(SlurmExecutor, ARestartedExecutorRecoversItsJobs) {
  auto first = Slurm();
  std::string dir = TempDir();
  ExecSpec spec = Spec("job-00000000c0f9", "echo started; sleep 60", dir);
  ASSERT_TRUE(first->executor->Start(spec).ok());
  const std::string slurm_id =
      static_cast<SlurmExecutor*>(first->executor.get())->SlurmId(spec.job_id);
  first.reset();  // the agent is gone; the job is not
  auto second = Slurm();
  EXPECT_EQ(second->executor->Poll(spec.job_id).status().code(), StatusCode::kNotFound);
  auto found = second->executor->Recover();
  ASSERT_TRUE(found.ok()) << found.status().ToString();
  EXPECT_NE(std::find(found->begin(), found->end(), spec.job_id), found->end());
  auto* slurm = static_cast<SlurmExecutor*>(second->executor.get());
  EXPECT_EQ(slurm->SlurmId(spec.job_id), slurm_id);
  auto again = second->executor->Recover();  // nothing new the second time
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(std::find(again->begin(), again->end(), spec.job_id), again->end());
  EXPECT_FALSE(second->executor->Poll(spec.job_id)->finished);
  ASSERT_TRUE(second->executor->Kill(spec.job_id).ok());
  ExecResult r = WaitFor(*second, spec.job_id);
  EXPECT_EQ(r.detail, "CANCELLED");
}

TEST(SlurmExecutor, CapacityComesFromSlurm) {
  auto h = Slurm();
  auto* slurm = static_cast<SlurmExecutor*>(h->executor.get());
  auto small = slurm->Partition("small");
  ASSERT_TRUE(small.ok()) << small.status().ToString();
  EXPECT_EQ(small->nodes, 1);
  EXPECT_EQ(small->gpus, 4);
  EXPECT_EQ(slurm->Partition("no-such-partition").status().code(), StatusCode::kNotFound);
  auto cap = slurm->Capacity(kPool);
  ASSERT_TRUE(cap.has_value());
  EXPECT_GE(cap->cards, 4);
  EXPECT_EQ(cap->source, "slurm");
  EXPECT_FALSE(slurm->Capacity("unknown-pool").has_value());
}

TEST(SlurmExecutor, GresFieldsParse) {
  EXPECT_EQ(GresCount("gpu:4", "gpu"), 4);
  EXPECT_EQ(GresCount("gpu:a100:2(S:0-1)", "gpu"), 2);
  EXPECT_EQ(GresCount("gpu:3(IDX:0-2),mps:100", "gpu"), 3);
  EXPECT_EQ(GresCount("(null)", "gpu"), 0);
}

}  // namespace
}  // namespace cpn
