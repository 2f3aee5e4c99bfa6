// bench/run submit: durable job submissions per second through cpn's API,
// against sbatch submissions per second to this machine's slurmctld, measured
// in the same run with the same number of concurrent clients.
//
// cpn: a real `cpn server` (SQLite, WAL, synchronous=FULL: a job is on disk
// before its 201) with one registered site; each client thread POSTs
// /v1/jobs with an Idempotency-Key over its own kept-alive connection. Slurm: each client thread
// runs `sbatch --hold --wrap true` (held, so nothing runs; all are cancelled afterwards). Starts
// the single-machine Slurm of scripts/start-slurm.sh if no controller answers. Prints a table, then
// one line of JSON with both rates, their ratio and latency percentiles.
#include <fmt/format.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "src/cli/process.h"
#include "src/core/catalog.h"
#include "src/core/topology.h"
#include "src/exec/command.h"
#include "src/net/http_client.h"

using namespace cpn;
namespace fs = std::filesystem;

namespace {

struct Run {
  double seconds = 0;
  int64_t ok = 0, failed = 0;
  std::vector<double> latency_ms;
  double Rate() const { return static_cast<double>(ok) / seconds; }
  double Percentile(double q) const {
    if (latency_ms.empty()) return 0;
    std::vector<double> v = latency_ms;
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
  }
};

// Runs `one(client, i)` from `clients` threads, `per_client` times each.
template <typename F>
Run Measure(int clients, int per_client, F one) {
  Run run;
  std::mutex mu;
  std::vector<std::thread> threads;
  auto t0 = std::chrono::steady_clock::now();
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      std::vector<double> mine;
      int64_t ok = 0, failed = 0;
      for (int i = 0; i < per_client; ++i) {
        auto s = std::chrono::steady_clock::now();
        bool good = one(c, i);
        mine.push_back(
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s)
                .count());
        (good ? ok : failed)++;
      }
      std::lock_guard lock(mu);
      run.latency_ms.insert(run.latency_ms.end(), mine.begin(), mine.end());
      run.ok += ok;
      run.failed += failed;
    });
  }
  for (auto& t : threads) t.join();
  run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return run;
}

// CPU seconds (user + system) a process has used so far, from /proc.
double CpuSeconds(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t close = stat.rfind(')');  // the command name may hold spaces
  if (close == std::string::npos) return 0;
  std::istringstream fields(stat.substr(close + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14 || i == 15) ticks += std::stod(field);  // utime, stime
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  int clients = 8, cpn_jobs = 4000, sbatch_jobs = 400;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--clients") clients = std::atoi(argv[i + 1]);
    if (a == "--jobs") cpn_jobs = std::atoi(argv[i + 1]);
    if (a == "--sbatch-jobs") sbatch_jobs = std::atoi(argv[i + 1]);
  }
  if (argc > 1 && std::string(argv[1]) == "--quick") cpn_jobs = 800, sbatch_jobs = 100;

  // The cpn server, fresh database.
  std::string dir = (fs::temp_directory_path() / fmt::format("cpn-submit-bench-{}", getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto server = cli::Spawn(
      // Authentication on, as in production: every submission carries a
      // tenant's token and is checked; no rate limit, since the figure is
      // the platform's own ceiling.
      {CPN_BINARY, "server", "--port", "0", "--port-file", dir + "/port", "--db", dir + "/cpn.db",
       "--rate-limit-rps", "0"},
      dir + "/server.log");
  if (!server.ok()) {
    std::fprintf(stderr, "%s\n", server.status().ToString().c_str());
    return 1;
  }
  for (int i = 0; i < 200 && !fs::exists(dir + "/port"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  int port = 0;
  std::ifstream(dir + "/port") >> port;
  std::string url = fmt::format("http://127.0.0.1:{}", port);
  auto catalog = Catalog::LoadDefault();
  auto topo = Topology::LoadDefault(*catalog);
  auto client = net::HttpClient::Create(url);
  if (!catalog.ok() || !topo.ok() || !client.ok() || port == 0) {
    std::fprintf(stderr, "cannot start the cpn server (see %s/server.log)\n", dir.c_str());
    return 1;
  }
  std::string operator_token;
  std::getline(std::ifstream(dir + "/cpn.db.operator-token"), operator_token);
  client->set_bearer_token(operator_token);
  auto issued =
      client->Send("POST", "/v1/tokens",
                   Json{{"role", "tenant"}, {"subject", "bench"}, {"user", "bench"}}.dump());
  if (!issued.ok() || issued->status != 201) {
    std::fprintf(stderr, "cannot issue the tenant's token\n");
    return 1;
  }
  net::HttpClient tenant = *client;
  tenant.set_bearer_token(Json::parse(issued->body)["token"].get<std::string>());
  const Site* zw = topo->FindSite("cpn:cn.nx/zwcloud/zw-01");
  auto reg = client->Send("POST", "/v1/sites", SiteToJson(*zw).dump());
  if (!reg.ok() || reg->status != 200) {
    std::fprintf(stderr, "cannot register the site\n");
    return 1;
  }
  const std::string job = Json{
      {"name", "bench"},
      {"tenant", "bench"},
      {"policy", "cheapest"},
      {"resources", {{"cards", 1}}},
      {"work", {{"fp16_eflop", 0.01}}},
      {"dataset", {{"site", "cpn:cn.nx/zwcloud/zw-01"}, {"size_gb", 0}}},
      {"run",
       {{"command", "true"}}}}.dump();
  // The site's agent: heartbeats keep its lease while the clients submit.
  std::atomic<bool> stop{false};
  std::thread agent([&] {
    auto http = net::HttpClient::Create(url);
    http->set_bearer_token(operator_token);
    while (!stop) {
      (void)http->Send("POST", "/v1/sites/cn.nx/zwcloud/zw-01/heartbeat", "{}");
      std::this_thread::sleep_for(std::chrono::milliseconds(1000));
    }
  });
  // One kept-alive connection per client, as a long-running client or
  // portal holds.
  std::vector<net::HttpClient> connections(static_cast<size_t>(clients) * 2, tenant);
  auto submit = [&](int c, int i) {
    net::HttpClient* http = &connections[static_cast<size_t>(c % 1000 + (c >= 1000 ? clients : 0))];
    auto r = http->Send("POST", "/v1/jobs", job, "application/json",
                        {{"Idempotency-Key", fmt::format("bench-{}-{}", c, i)}});
    return r.ok() && r->status == 201;
  };
  Measure(clients, 25, [&](int c, int i) { return submit(c + 1000, i); });  // warm-up
  const double cpu_before_s = CpuSeconds(*server);
  Run cpn_run = Measure(clients, cpn_jobs / clients, submit);
  const double server_cpu_us = (CpuSeconds(*server) - cpu_before_s) * 1e6 /
                               static_cast<double>(std::max<int64_t>(cpn_run.ok, 1));
  stop = true;
  agent.join();
  cli::Stop(*server, 3000);

  // sbatch against this machine's slurmctld.
  SystemCommandRunner runner;
  auto ping = runner.Run({"scontrol", "ping"});
  if (!ping.ok() || ping->exit_code != 0) {
    std::fprintf(stderr, "no Slurm controller answers; starting scripts/start-slurm.sh\n");
    if (std::system("bash scripts/start-slurm.sh >/dev/null") != 0) {
      std::fprintf(stderr, "cannot start Slurm (needs root)\n");
      return 1;
    }
  }
  Run slurm_run = Measure(clients, sbatch_jobs / clients, [&](int, int) {
    auto r = runner.Run({"sbatch", "--parsable", "--hold", "--job-name=cpn-submit-bench",
                         "--output=/dev/null", "--wrap", "true"});
    return r.ok() && r->exit_code == 0;
  });
  (void)runner.Run({"scancel", "--name=cpn-submit-bench"});

  double ratio = cpn_run.Rate() / slurm_run.Rate();
  std::printf("%d concurrent clients\n", clients);
  std::printf("%-34s %8s %8s %12s %10s %10s %10s\n", "", "ok", "failed", "per second", "p50 ms",
              "p99 ms", "max ms");
  std::printf("%-34s %8lld %8lld %12.0f %10.2f %10.2f %10.2f\n", "cpn POST /v1/jobs (durable)",
              static_cast<long long>(cpn_run.ok), static_cast<long long>(cpn_run.failed),
              cpn_run.Rate(), cpn_run.Percentile(0.5), cpn_run.Percentile(0.99),
              cpn_run.Percentile(1.0));
  std::printf("%-34s %8lld %8lld %12.0f %10.2f %10.2f %10.2f\n", "sbatch --hold (slurmctld)",
              static_cast<long long>(slurm_run.ok), static_cast<long long>(slurm_run.failed),
              slurm_run.Rate(), slurm_run.Percentile(0.5), slurm_run.Percentile(0.99),
              slurm_run.Percentile(1.0));
  std::printf("cpn server CPU per submission: %.0f µs\n", server_cpu_us);
  std::printf("ratio cpn / sbatch: %.1fx (target at least 10x)\n", ratio);
  std::printf(
      "{\"bench\":\"submit\",\"clients\":%d,\"cpn\":{\"ok\":%lld,\"failed\":%lld,\"per_s\":%.1f,"
      "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"server_cpu_us\":%.0f},\"sbatch\":{\"ok\":%lld,\"failed\":%"
      "lld,\"per_s\":%.1f,"
      "\"p50_ms\":%.3f,\"p99_ms\":%.3f},\"ratio_cpn_vs_sbatch\":%.2f,\"target_ratio\":10}\n",
      clients, static_cast<long long>(cpn_run.ok), static_cast<long long>(cpn_run.failed),
      cpn_run.Rate(), cpn_run.Percentile(0.5), cpn_run.Percentile(0.99), server_cpu_us,
      static_cast<long long>(slurm_run.ok), static_cast<long long>(slurm_run.failed),
      slurm_run.Rate(), slurm_run.Percentile(0.5), slurm_run.Percentile(0.99), ratio);
  fs::remove_all(dir);
  return cpn_run.failed == 0 && slurm_run.failed == 0 ? 0 : 1;
}
