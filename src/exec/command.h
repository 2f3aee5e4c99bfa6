// Running a program and collecting what it prints: how cpn talks to batch
// systems' command-line tools (sbatch, squeue, scancel, sinfo). An interface,
// so tests can stand in for the tools.
#pragma once

#include <string>
#include <vector>

#include "src/core/status.h"

namespace cpn {

struct CommandOutput {
  int exit_code = 0;
  std::string out, err;
};

class CommandRunner {
 public:
  virtual ~CommandRunner() = default;
  // Runs argv[0] (looked up in PATH) with no shell; Unavailable if it cannot
  // be started. A non-zero exit is a successful run with that exit code.
  virtual Result<CommandOutput> Run(const std::vector<std::string>& argv) = 0;
};

// Runs programs for real, with a timeout (SIGKILL when it passes).
class SystemCommandRunner final : public CommandRunner {
 public:
  explicit SystemCommandRunner(int timeout_ms = 30'000) : timeout_ms_(timeout_ms) {}
  Result<CommandOutput> Run(const std::vector<std::string>& argv) override;

 private:
  int timeout_ms_;
};

}  // namespace cpn
