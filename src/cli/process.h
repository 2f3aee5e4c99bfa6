// Child processes for `cpn dev` and the integration tests: spawn a program
// with arguments and its output in a file, signal it, wait for it.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "src/core/status.h"

namespace cpn::cli {

// Starts `argv` (argv[0] is the program path) with stdout/stderr appended to
// `log_path` ("" keeps the parent's). Returns the pid.
Result<pid_t> Spawn(const std::vector<std::string>& argv, const std::string& log_path);
// SIGTERM, wait up to `grace_ms`, then SIGKILL. Returns the exit status.
int Stop(pid_t pid, int grace_ms = 5000);
// Non-blocking: true if the process has exited (and is reaped).
bool Exited(pid_t pid, int* status = nullptr);
// The path of the running executable.
std::string SelfPath();

}  // namespace cpn::cli
