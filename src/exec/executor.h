// Executor: how a site agent runs a job's process on the site's machines.
//
// The agent hands the executor what to start (command, environment, working
// directory, card slots, log file) and polls it; the executor reports when the
// process ends and how. Implementations: LocalExecutor (a child process on
// this machine); the Slurm executor comes later behind the same interface.
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
};

struct ExecResult {
  bool finished = false;
  int exit_code = 0;  // valid when finished and !signaled
  bool signaled = false;
  int signal = 0;
};

class Executor {
 public:
  virtual ~Executor() = default;
  virtual Status Start(const ExecSpec& spec) = 0;
  // Non-blocking.
  virtual Result<ExecResult> Poll(const std::string& job_id) = 0;
  // Asks the job to stop (SIGTERM, then SIGKILL after a grace period).
  virtual Status Kill(const std::string& job_id) = 0;
};

}  // namespace cpn
