// Executor: how a site agent runs a job's process on the site's machines.
//
// The agent hands the executor what to start (command, environment, working
// directory, cards, log file) and polls it; the executor reports when the
// process ends and how. Implementations: LocalExecutor (a child process on
// this machine) and SlurmExecutor (a batch job on the site's Slurm cluster).
// Implementations are used from the agent's one thread.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "src/core/status.h"

namespace cpn {

struct ExecSpec {
  std::string job_id;
  std::string command;  // run by /bin/sh -c
  std::map<std::string, std::string> env;
  std::string workdir;   // created if missing
  std::string log_path;  // stdout and stderr go here
  std::string pool_id;   // which of the site's pools, and how many of its cards
  int64_t cards = 0;
  // Wall-clock limit; past it the job is stopped and ends with detail
  // "TIMEOUT". 0: none (a batch system's partition default still applies).
  int64_t time_limit_s = 0;
};

struct ExecResult {
  // Running now (a batch system may hold a submitted job pending first).
  bool running = false;
  bool finished = false;
  int exit_code = 0;  // valid when finished and !signaled
  bool signaled = false;
  int signal = 0;
  // What the batch system said, when it says more than an exit code
  // ("TIMEOUT", "NODE_FAIL", ...); empty otherwise.
  std::string detail;
};

// A pool's size and free cards as the executor's batch system sees them.
struct PoolCapacity {
  int64_t cards = 0, free_cards = 0;
  std::string source;  // "slurm", ...
};

class Executor {
 public:
  virtual ~Executor() = default;
  virtual Status Start(const ExecSpec& spec) = 0;
  // Non-blocking.
  virtual Result<ExecResult> Poll(const std::string& job_id) = 0;
  // Asks the job to stop (SIGTERM, then SIGKILL after a grace period).
  virtual Status Kill(const std::string& job_id) = 0;
  // True if the executor picks the devices itself (Slurm sets
  // CUDA_VISIBLE_DEVICES); the agent then does not hand out card slots.
  virtual bool manages_devices() const { return false; }
  // Jobs that an earlier run of this agent started and the batch system
  // still holds (pending, running or just ended): taken back under this
  // executor, so Poll and Kill work on them, and returned by cpn job id. An
  // executor whose jobs die with the agent has none to recover.
  virtual Result<std::vector<std::string>> Recover() { return std::vector<std::string>{}; }
  // The pool's capacity from the batch system, if it has one to ask.
  virtual std::optional<PoolCapacity> Capacity(const std::string& /*pool_id*/) {
    return std::nullopt;
  }
};

}  // namespace cpn
