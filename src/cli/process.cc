#include "src/cli/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

namespace cpn::cli {

Result<pid_t> Spawn(const std::vector<std::string>& argv, const std::string& log_path) {
  std::vector<std::string> args = argv;
  std::vector<char*> cargv;
  for (auto& a : args) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  int fd = -1;
  if (!log_path.empty()) {
    fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return Unavailable("cannot open " + log_path + ": " + std::strerror(errno));
  }
  pid_t pid = ::fork();
  if (pid < 0) return Unavailable(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    ::execv(cargv[0], cargv.data());
    _exit(127);
  }
  if (fd >= 0) ::close(fd);
  return pid;
}

bool Exited(pid_t pid, int* status) {
  int st = 0;
  pid_t r = ::waitpid(pid, &st, WNOHANG);
  if (r == pid || (r < 0 && errno == ECHILD)) {
    if (status) *status = st;
    return true;
  }
  return false;
}

int Stop(pid_t pid, int grace_ms) {
  int status = 0;
  if (Exited(pid, &status)) return status;
  ::kill(pid, SIGTERM);
  for (int waited = 0; waited < grace_ms; waited += 20) {
    if (Exited(pid, &status)) return status;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  return status;
}

std::string SelfPath() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "cpn";
  buf[n] = '\0';
  return buf;
}

}  // namespace cpn::cli
