#include "src/exec/local_executor.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

namespace cpn {

LocalExecutor::~LocalExecutor() {
  for (auto& [id, c] : children_) {
    if (!c.finished) {
      ::kill(-c.pid, SIGKILL);
      ::waitpid(c.pid, nullptr, 0);
    }
  }
}

Status LocalExecutor::Start(const ExecSpec& spec) {
  if (children_.count(spec.job_id)) return AlreadyExists("job " + spec.job_id + " already started");
  std::error_code ec;
  if (!spec.workdir.empty()) {
    std::filesystem::create_directories(spec.workdir, ec);
    if (ec)
      return FailedPrecondition("cannot create working directory " + spec.workdir + ": " +
                                ec.message());
  }
  {
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(spec.log_path).parent_path(), ec);
  }
  int log_fd = ::open(spec.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    return FailedPrecondition("cannot open log file " + spec.log_path + ": " +
                              std::strerror(errno));
  }
  // Build argv/envp before fork: only async-signal-safe calls after it.
  std::vector<std::string> env_strings;
  for (const char* name : {"PATH", "HOME", "LANG", "TMPDIR"}) {
    if (const char* v = std::getenv(name)) env_strings.push_back(std::string(name) + "=" + v);
  }
  for (const auto& [k, v] : spec.env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string sh = "/bin/sh", dash_c = "-c", command = spec.command;
  char* argv[] = {sh.data(), dash_c.data(), command.data(), nullptr};
  int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);

  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(log_fd);
    if (devnull >= 0) ::close(devnull);
    return Unavailable(std::string("fork failed: ") + std::strerror(errno));
  }
  if (pid == 0) {
    ::setsid();
    if (devnull >= 0) ::dup2(devnull, 0);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    if (!spec.workdir.empty() && ::chdir(spec.workdir.c_str()) != 0) _exit(126);
    ::execve(argv[0], argv, envp.data());
    _exit(127);
  }
  ::close(log_fd);
  if (devnull >= 0) ::close(devnull);
  Child child;
  child.pid = pid;
  if (spec.time_limit_s > 0) child.deadline_ms = clock_.NowMs() + spec.time_limit_s * 1000;
  children_[spec.job_id] = child;
  return Status::Ok();
}

Result<ExecResult> LocalExecutor::Poll(const std::string& job_id) {
  auto it = children_.find(job_id);
  if (it == children_.end()) return NotFound("job " + job_id + " is not running here");
  Child& c = it->second;
  if (c.finished) return c.result;
  int status = 0;
  pid_t r = ::waitpid(c.pid, &status, WNOHANG);
  if (r == c.pid) {
    c.finished = true;
    c.result.finished = true;
    if (WIFEXITED(status)) {
      c.result.exit_code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
      c.result.signaled = true;
      c.result.signal = WTERMSIG(status);
      c.result.exit_code = 128 + c.result.signal;
    }
    if (c.timed_out) c.result.detail = "TIMEOUT";
    // Reap anything the job left behind in its group.
    ::kill(-c.pid, SIGKILL);
    return c.result;
  }
  if (c.deadline_ms > 0 && !c.timed_out && clock_.NowMs() >= c.deadline_ms) {
    c.timed_out = true;
    if (c.term_sent_ms == 0) {
      c.term_sent_ms = clock_.NowMs();
      ::kill(-c.pid, SIGTERM);
    }
  }
  if (c.term_sent_ms > 0 && clock_.NowMs() - c.term_sent_ms > kill_grace_ms_) {
    ::kill(-c.pid, SIGKILL);
  }
  ExecResult running;
  running.running = true;  // a started process runs at once
  return running;
}

Status LocalExecutor::Kill(const std::string& job_id) {
  auto it = children_.find(job_id);
  if (it == children_.end()) return NotFound("job " + job_id + " is not running here");
  Child& c = it->second;
  if (c.finished || c.term_sent_ms > 0) return Status::Ok();
  c.term_sent_ms = clock_.NowMs();
  ::kill(-c.pid, SIGTERM);
  return Status::Ok();
}

}  // namespace cpn
