// LocalExecutor: runs each job as a child process group on this machine.
//
// The command runs under /bin/sh -c in its own session (so Kill reaches every
// process it started), with the job's environment added to a small inherited
// base (PATH, HOME, LANG), in its working directory, with stdout and stderr
// appended to the job's log file. Kill sends SIGTERM to the group and SIGKILL
// after `kill_grace_ms`; a job past its time limit is stopped the same way and
// ends with detail "TIMEOUT". Not thread-safe: one agent thread drives it.
#pragma once

#include <sys/types.h>

#include <map>

#include "src/core/clock.h"
#include "src/exec/executor.h"

namespace cpn {

class LocalExecutor final : public Executor {
 public:
  explicit LocalExecutor(const Clock& clock, int64_t kill_grace_ms = 3000)
      : clock_(clock), kill_grace_ms_(kill_grace_ms) {}
  ~LocalExecutor() override;

  Status Start(const ExecSpec& spec) override;
  Result<ExecResult> Poll(const std::string& job_id) override;
  Status Kill(const std::string& job_id) override;

 private:
  struct Child {
    pid_t pid = 0;
    int64_t term_sent_ms = 0;
    int64_t deadline_ms = 0;  // 0: no time limit
    bool timed_out = false;
    bool finished = false;
    ExecResult result;
  };
  const Clock& clock_;
  int64_t kill_grace_ms_;
  std::map<std::string, Child> children_;
};

}  // namespace cpn
