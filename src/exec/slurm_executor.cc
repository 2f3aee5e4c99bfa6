#include "src/exec/slurm_executor.h"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace cpn {
namespace {

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  size_t i = 0;
  while (i < s.size() && s[i] == ' ') ++i;
  return s.substr(i);
}

// The value of `key=` in a `scontrol -o` line.
std::string Field(const std::string& line, const std::string& key) {
  size_t at = line.find(" " + key + "=");
  if (at == std::string::npos) {
    if (line.rfind(key + "=", 0) != 0) return "";
    at = 0;
  } else {
    at += 1;
  }
  at += key.size() + 1;
  size_t end = line.find(' ', at);
  return line.substr(at, end == std::string::npos ? std::string::npos : end - at);
}

std::string ShellQuote(const std::string& v) {
  std::string out = "'";
  for (char c : v) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Turns a final Slurm state and "code:signal" into an ExecResult.
ExecResult Finished(const std::string& state, const std::string& exit_code) {
  ExecResult r;
  r.finished = true;
  int code = 0, sig = 0;
  std::sscanf(exit_code.c_str(), "%d:%d", &code, &sig);
  r.exit_code = code;
  r.signaled = sig != 0;
  r.signal = sig;
  if (state != "COMPLETED" && state != "FAILED") r.detail = state;
  if (state == "FAILED" && code == 0 && sig == 0) r.exit_code = 1;
  return r;
}

bool IsFinal(const std::string& state) {
  return state == "COMPLETED" || state == "FAILED" || state == "CANCELLED" || state == "TIMEOUT" ||
         state == "NODE_FAIL" || state == "OUT_OF_MEMORY" || state == "PREEMPTED" ||
         state == "BOOT_FAIL" || state == "DEADLINE";
}

}  // namespace

int64_t GresCount(const std::string& field, const std::string& name) {
  int64_t total = 0;
  std::stringstream entries(field);
  std::string e;
  while (std::getline(entries, e, ',')) {
    e = e.substr(0, e.find('('));
    if (e.rfind(name + ":", 0) != 0) continue;
    std::string count = e.substr(e.rfind(':') + 1);
    char* end = nullptr;
    long long n = std::strtoll(count.c_str(), &end, 10);
    if (!count.empty() && *end == '\0') total += n;
  }
  return total;
}

SlurmExecutor::SlurmExecutor(CommandRunner& runner,
                             std::map<std::string, std::string> partition_by_pool,
                             std::string gres_name)
    : run_(runner), partition_by_pool_(std::move(partition_by_pool)), gres_(std::move(gres_name)) {}

std::string SlurmExecutor::SlurmId(const std::string& job_id) const {
  auto it = slurm_ids_.find(job_id);
  return it == slurm_ids_.end() ? "" : it->second;
}

Status SlurmExecutor::Start(const ExecSpec& spec) {
  if (slurm_ids_.count(spec.job_id)) return AlreadyExists(spec.job_id + " already started");
  auto part = partition_by_pool_.find(spec.pool_id);
  if (part == partition_by_pool_.end()) {
    return FailedPrecondition("pool " + spec.pool_id +
                              " has no Slurm partition in the agent config");
  }
  std::error_code ec;
  std::filesystem::create_directories(spec.workdir, ec);
  if (ec) return Unavailable("cannot create " + spec.workdir + ": " + ec.message());
  std::filesystem::create_directories(std::filesystem::path(spec.log_path).parent_path(), ec);
  // The script carries the environment, so values may hold any character.
  std::string script_path = spec.workdir + "/.cpn-" + spec.job_id + ".sh";
  {
    std::ofstream script(script_path);
    script << "#!/bin/sh\n# cpn job " << spec.job_id << "\n";
    for (const auto& [k, v] : spec.env) script << "export " << k << "=" << ShellQuote(v) << "\n";
    script << spec.command << "\n";
    if (!script.good()) return Unavailable("cannot write " + script_path);
  }
  std::vector<std::string> argv = {"sbatch",
                                   "--parsable",
                                   "--job-name=cpn-" + spec.job_id,
                                   "--partition=" + part->second,
                                   "--ntasks=1",
                                   "--output=" + spec.log_path,
                                   "--chdir=" + spec.workdir};
  if (spec.cards > 0) argv.push_back(fmt::format("--gres={}:{}", gres_, spec.cards));
  if (spec.time_limit_s > 0) {
    // minutes:seconds; Slurm rounds up to its own granularity.
    argv.push_back(fmt::format("--time={}:{:02}", spec.time_limit_s / 60, spec.time_limit_s % 60));
  }
  argv.push_back(script_path);
  auto r = run_.Run(argv);
  if (!r.ok()) return r.status();
  if (r->exit_code != 0) {
    std::string why = Trim(r->err.empty() ? r->out : r->err);
    // sbatch repeats itself; its last line says what was wrong.
    size_t nl = why.rfind('\n');
    if (nl != std::string::npos) why = why.substr(nl + 1);
    return InvalidArgument("Slurm refused the job: " + why);
  }
  std::string id = Trim(r->out);
  id = id.substr(0, id.find(';'));
  if (id.empty()) return Internal("sbatch printed no job id");
  slurm_ids_[spec.job_id] = id;
  return Status::Ok();
}

Result<ExecResult> SlurmExecutor::Poll(const std::string& job_id) {
  std::string id = SlurmId(job_id);
  if (id.empty()) return NotFound(job_id + " was not started here");
  auto r = run_.Run({"scontrol", "show", "job", "-o", id});
  if (!r.ok()) return r.status();
  if (r->exit_code == 0) {
    std::string state = Field(r->out, "JobState");
    if (!IsFinal(state)) {
      ExecResult pending_or_running;
      pending_or_running.running = state == "RUNNING" || state == "COMPLETING";
      return pending_or_running;
    }
    return Finished(state, Field(r->out, "ExitCode"));
  }
  // The controller forgets finished jobs after MinJobAge: ask the job
  // completion log.
  auto acct = run_.Run({"sacct", "-c", "-n", "-P", "-j", id, "-o", "state,exitcode"});
  if (!acct.ok()) return acct.status();
  std::string line = Trim(acct->out);
  line = line.substr(0, line.find('\n'));
  size_t bar = line.find('|');
  if (acct->exit_code != 0 || bar == std::string::npos) {
    return Unavailable("Slurm knows nothing of job " + id + ": " + Trim(r->err));
  }
  std::string state = line.substr(0, bar);
  state = state.substr(0, state.find(' '));  // "CANCELLED by 0"
  if (!IsFinal(state)) return ExecResult{};
  return Finished(state, line.substr(bar + 1));
}

Result<std::vector<std::string>> SlurmExecutor::Recover() {
  auto r = run_.Run({"squeue", "-h", "-o", "%i|%j"});
  if (!r.ok()) return r.status();
  if (r->exit_code != 0) return Unavailable("squeue: " + Trim(r->err));
  std::vector<std::string> found;
  std::stringstream lines(r->out);
  std::string line;
  while (std::getline(lines, line)) {
    line = Trim(line);
    size_t bar = line.find('|');
    if (bar == std::string::npos || line.compare(bar + 1, 4, "cpn-") != 0) continue;
    std::string slurm_id = line.substr(0, bar);
    std::string job_id = line.substr(bar + 5);
    if (slurm_id.empty() || job_id.empty() || slurm_ids_.count(job_id)) continue;
    slurm_ids_[job_id] = slurm_id;
    found.push_back(job_id);
  }
  return found;
}

Status SlurmExecutor::Kill(const std::string& job_id) {
  std::string id = SlurmId(job_id);
  if (id.empty()) return NotFound(job_id + " was not started here");
  auto r = run_.Run({"scancel", id});
  if (!r.ok()) return r.status();
  if (r->exit_code != 0) return Unavailable("scancel " + id + ": " + Trim(r->err));
  return Status::Ok();
}

Result<SlurmPartition> SlurmExecutor::Partition(const std::string& name) {
  auto r = run_.Run(
      {"sinfo", "-h", "-N", "-p", name, "-O", "NodeList:64,Gres:128,GresUsed:128,StateCompact:32"});
  if (!r.ok()) return r.status();
  if (r->exit_code != 0) return Unavailable("sinfo -p " + name + ": " + Trim(r->err));
  SlurmPartition p;
  p.name = name;
  std::stringstream lines(r->out);
  std::string line;
  while (std::getline(lines, line)) {
    std::stringstream cols(line);
    std::string node, gres, used, state;
    if (!(cols >> node >> gres >> used >> state)) continue;
    p.nodes++;
    bool up = state.find("down") == std::string::npos && state.find("drain") == std::string::npos &&
              state.find("fail") == std::string::npos && state.find("maint") == std::string::npos &&
              state.find("unk") == std::string::npos && state.find('*') == std::string::npos;
    if (!up) continue;
    p.nodes_up++;
    int64_t total = GresCount(gres, gres_);
    p.gpus += total;
    p.free_gpus += std::max<int64_t>(0, total - GresCount(used, gres_));
  }
  if (p.nodes == 0) return NotFound("Slurm has no partition '" + name + "' (or it has no nodes)");
  return p;
}

std::optional<PoolCapacity> SlurmExecutor::Capacity(const std::string& pool_id) {
  auto part = partition_by_pool_.find(pool_id);
  if (part == partition_by_pool_.end()) return std::nullopt;
  auto p = Partition(part->second);
  if (!p.ok()) return std::nullopt;
  return PoolCapacity{p->gpus, p->free_gpus, "slurm"};
}

}  // namespace cpn
