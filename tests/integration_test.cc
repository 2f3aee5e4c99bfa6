// Cross-process tests: a real `cpn server` and real `cpn agent`s over
// loopback HTTP, driven through the `cpn` command line as a user would.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <thread>

#include "src/agent/agent_config.h"
#include "src/cli/process.h"
#include "src/core/catalog.h"
#include "src/core/topology.h"
#include "src/net/http_client.h"
#include "src/sched/scheduler.h"
#include "src/testing/tls_files.h"

namespace cpn {
namespace {

namespace fs = std::filesystem;

struct CommandResult {
  int exit_code = -1;
  std::string out;
};

CommandResult RunShell(const std::string& command) {
  CommandResult r;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int st = pclose(p);
  r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

// Sends raw bytes on a fresh connection and returns what comes back.
std::string RawExchange(int port, const std::string& bytes) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return "connect failed";
  }
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  (void)!::write(fd, bytes.data(), bytes.size());
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

// Polls `done` every 50 ms; the deadline only bounds a broken run.
bool WaitUntil(const std::function<bool()>& done, int timeout_ms = 60'000) {
  for (int waited = 0; waited < timeout_ms; waited += 50) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return done();
}

class Network {
 public:
  explicit Network(const std::string& name) {
    dir_ = (fs::temp_directory_path() / fmt::format("cpn-it-{}-{}", ::getpid(), name)).string();
    fs::remove_all(dir_);
    fs::create_directories(dir_ + "/logs");
    catalog_ = std::move(Catalog::LoadDefault()).value();
    topology_ = std::move(Topology::LoadDefault(catalog_)).value();
  }
  ~Network() {
    for (pid_t p : agents_) {
      if (p > 0) cli::Stop(p, 2000);
    }
    if (server_ > 0) cli::Stop(server_, 2000);
  }

  void StartServer(int port = 0, std::vector<std::string> extra = {}) {
    fs::remove(dir_ + "/port");
    std::vector<std::string> argv = {CPN_BINARY,           "server",      "--port",
                                     std::to_string(port), "--db",        dir_ + "/cpn.db",
                                     "--port-file",        dir_ + "/port"};
    // Authentication has its own test; elsewhere every caller operates.
    if (std::find(extra.begin(), extra.end(), "--auth") == extra.end()) {
      argv.insert(argv.end(), {"--auth", "off"});
    }
    argv.insert(argv.end(), extra.begin(), extra.end());
    extra_ = extra;
    auto pid = cli::Spawn(argv, dir_ + "/logs/server.log");
    ASSERT_TRUE(pid.ok());
    server_ = *pid;
    ASSERT_TRUE(WaitUntil([&] { return fs::exists(dir_ + "/port"); }, 20'000))
        << "server did not start";
    std::ifstream(dir_ + "/port") >> port_;
    const bool https = std::find(extra.begin(), extra.end(), "--tls-cert") != extra.end();
    url_ = fmt::format("{}://127.0.0.1:{}", https ? "https" : "http", port_);
  }
  void KillServer() {
    ::kill(server_, SIGKILL);
    ::waitpid(server_, nullptr, 0);
    server_ = 0;
  }
  // Restarts the server on its port with the same flags.
  void RestartServer() { StartServer(port_, extra_); }

  // Starts an agent for one of the topology's sites; `toml` replaces the
  // generated configuration. Returns its index for KillAgent/RestartAgent.
  size_t StartAgent(const std::string& site_id, const std::string& toml = "") {
    const Site* site = topology_.FindSite(site_id);
    EXPECT_NE(site, nullptr);
    std::string name = site_id.substr(site_id.rfind('/') + 1);
    std::string cfg = dir_ + "/" + name + ".toml";
    std::ofstream(cfg) << (toml.empty()
                               ? AgentConfigToToml(*site, url_, dir_ + "/work-" + name, 200)
                               : toml);
    agent_args_.push_back({CPN_BINARY, "agent", "--config", cfg});
    agent_logs_.push_back(dir_ + "/logs/agent-" + name + ".log");
    agents_.push_back(0);
    RestartAgent(agents_.size() - 1);
    return agents_.size() - 1;
  }
  void KillAgent(size_t i) {
    ::kill(agents_[i], SIGKILL);
    ::waitpid(agents_[i], nullptr, 0);
    agents_[i] = 0;
  }
  void RestartAgent(size_t i) {
    auto pid = cli::Spawn(agent_args_[i], agent_logs_[i]);
    EXPECT_TRUE(pid.ok());
    agents_[i] = pid.ok() ? *pid : 0;
  }
  const std::string& dir() const { return dir_; }

  CommandResult Cli(const std::string& args) {
    return RunShell(fmt::format("{} {} --server {}", CPN_BINARY, args, url_));
  }
  Json CliJson(const std::string& args) {
    CommandResult r = Cli(args + " --json");
    EXPECT_EQ(r.exit_code, 0) << args << ": " << r.out;
    Json j = Json::parse(r.out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << r.out;
    return j;
  }
  std::string WriteFile(const std::string& name, const std::string& text) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }
  size_t Registered() {
    CommandResult r = Cli("sites --json");
    if (r.exit_code != 0) return 0;
    Json j = Json::parse(r.out, nullptr, false);
    return j.is_object() ? j["sites"].size() : 0;
  }

  const std::string& url() const { return url_; }
  int port() const { return port_; }
  const Catalog& catalog() const { return catalog_; }
  const Topology& topology() const { return topology_; }

 private:
  std::string dir_, url_;
  int port_ = 0;
  pid_t server_ = 0;
  std::vector<pid_t> agents_;
  std::vector<std::vector<std::string>> agent_args_;
  std::vector<std::string> agent_logs_, extra_;
  Catalog catalog_;
  Topology topology_;
};

const char* kBeijing = "cpn:cn.bj/bj-cloud/bj-01";
const char* kZhongwei = "cpn:cn.nx/zwcloud/zw-01";
const char* kQingyang = "cpn:cn.gs/qy-dc/qingyang-01";

std::string TrainingJob(const std::string& name, const std::string& command) {
  return Json{{"name", name},
              {"tenant", "bj-health"},
              {"policy", "cheapest"},
              {"resources", {{"cards", 8}, {"min_memory_gb", 64}, {"software", {"pytorch"}}}},
              {"work", {{"fp16_eflop", 200}}},
              {"dataset", {{"site", kBeijing}, {"size_gb", 500}, {"residency", "country"}}},
              {"run", {{"command", command}}}}
      .dump();
}

TEST(Integration, JobsRunWhereTheSchedulerChoseAndTheirLogsComeBack) {
  Network net("e2e");
  net.StartServer();
  for (const char* s : {kBeijing, kZhongwei, kQingyang}) net.StartAgent(s);
  ASSERT_TRUE(WaitUntil([&] { return net.Registered() == 3; }));

  // What the scheduler library says for these three sites, computed here.
  std::vector<Site> three;
  for (const char* s : {kBeijing, kZhongwei, kQingyang})
    three.push_back(*net.topology().FindSite(s));
  Topology small = Topology::Make(three, net.topology().links(), net.topology().intra_area(),
                                  net.topology().default_link());
  std::string body = TrainingJob(
      "e2e", "echo \"slots=$CPN_CARD_SLOTS site=$CPN_SITE\"; echo epoch-1; sleep 2; echo epoch-2");
  auto spec = JobSpecFromJson(Json::parse(body), net.catalog());
  ASSERT_TRUE(spec.ok());
  sched::SchedulerInput in{&net.catalog(), &small, nullptr};
  sched::Decision expected = sched::Decide(*spec, in);
  ASSERT_EQ(expected.outcome, sched::Outcome::kPlaced);

  Json quote = net.CliJson("quote " + net.WriteFile("job.json", body));
  EXPECT_EQ(quote["options"][0]["pool"], expected.chosen()->pool_id);

  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    Json job = net.CliJson("submit " + net.WriteFile(fmt::format("job{}.json", i), body));
    ASSERT_TRUE(job.contains("id"));
    ids.push_back(job["id"]);
  }
  for (const auto& id : ids) {
    Json job;
    ASSERT_TRUE(WaitUntil([&] {
      job = net.CliJson("job " + id);
      return job["state"] == "succeeded" || job["state"] == "failed";
    })) << job.dump();
    EXPECT_EQ(job["state"], "succeeded") << job.dump(2);
    EXPECT_EQ(job["pool"], expected.chosen()->pool_id);
    EXPECT_EQ(job["exit_code"], 0);
    CommandResult logs = net.Cli("logs " + id);
    EXPECT_EQ(logs.exit_code, 0);
    EXPECT_NE(logs.out.find("site=" + expected.chosen()->site_id), std::string::npos) << logs.out;
    EXPECT_NE(logs.out.find("epoch-2"), std::string::npos) << logs.out;
    CommandResult follow = net.Cli("logs -f " + id);
    EXPECT_EQ(follow.out, logs.out);
  }
  // The three 8-card jobs overlapped (each sleeps 2 s): each had its own 8 slots.
  std::set<std::string> slots_seen;
  for (const auto& id : ids) {
    std::string out = net.Cli("logs " + id).out;
    ASSERT_EQ(out.rfind("slots=", 0), 0u) << out;
    std::string list = out.substr(6, out.find(' ') - 6);
    size_t count = 0;
    for (size_t start = 0; start <= list.size();) {
      size_t comma = list.find(',', start);
      std::string slot = list.substr(start, comma == std::string::npos ? comma : comma - start);
      EXPECT_TRUE(slots_seen.insert(slot).second) << "slot " << slot << " given twice";
      ++count;
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    EXPECT_EQ(count, 8u) << list;
  }

  // A failing job reports failure with its exit code.
  Json bad =
      net.CliJson("submit " + net.WriteFile("bad.json", TrainingJob("bad", "echo boom; exit 7")));
  Json done;
  ASSERT_TRUE(WaitUntil([&] {
    done = net.CliJson("job " + bad["id"].get<std::string>());
    return done["state"] == "failed";
  }));
  EXPECT_EQ(done["exit_code"], 7);

  // Cancel a long job.
  Json slow = net.CliJson("submit " + net.WriteFile("slow.json", TrainingJob("slow", "sleep 60")));
  std::string slow_id = slow["id"];
  ASSERT_TRUE(WaitUntil([&] { return net.CliJson("job " + slow_id)["state"] == "running"; }));
  EXPECT_EQ(net.Cli("cancel " + slow_id).exit_code, 0);
  ASSERT_TRUE(WaitUntil([&] { return net.CliJson("job " + slow_id)["state"] == "cancelled"; }));

  // The human-readable commands work too.
  EXPECT_NE(net.Cli("jobs").out.find(ids[0]), std::string::npos);
  EXPECT_NE(net.Cli("resources --accelerator ascend-910b").out.find("zw-01"), std::string::npos);
  EXPECT_NE(net.Cli("sites").out.find("Zhongwei"), std::string::npos);
  CommandResult missing = net.Cli("job job-ffffffffffff");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.out.find("not found"), std::string::npos);
}

TEST(Integration, AcceptedJobsFinishExactlyOnceAcrossAServerKill) {
  Network net("restart");
  net.StartServer();
  for (const char* s : {kZhongwei, kQingyang}) net.StartAgent(s);
  ASSERT_TRUE(WaitUntil([&] { return net.Registered() == 2; }));
  std::vector<std::string> ids;
  for (int i = 0; i < 6; ++i) {
    Json job = net.CliJson("submit " + net.WriteFile(fmt::format("r{}.json", i),
                                                     TrainingJob(fmt::format("r{}", i),
                                                                 "echo start; sleep 2; echo end")));
    ids.push_back(job["id"]);
  }
  // Kill the server while the jobs run.
  ASSERT_TRUE(WaitUntil([&] { return net.CliJson("job " + ids[0])["state"] == "running"; }));
  int port = net.port();
  net.KillServer();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  net.StartServer(port);
  (void)port;
  for (const auto& id : ids) {
    Json job;
    ASSERT_TRUE(WaitUntil([&] {
      job = net.CliJson("job " + id);
      return job["state"] == "succeeded" || job["state"] == "failed";
    })) << job.dump();
    EXPECT_EQ(job["state"], "succeeded");
    int terminal = 0, running = 0;
    for (const auto& e : job["events"]) {
      terminal += e["state"] == "succeeded" || e["state"] == "failed";
      running += e["state"] == "running";
    }
    EXPECT_EQ(terminal, 1) << job["events"].dump(2);
    EXPECT_EQ(running, 1) << job["events"].dump(2);
    std::string logs = net.Cli("logs " + id).out;
    EXPECT_EQ(logs, "start\nend\n");
  }
  Json all = net.CliJson("jobs");
  EXPECT_EQ(all["jobs"].size(), ids.size());
}

TEST(Integration, HostileHttpIsRefusedAndTheServerKeepsServing) {
  Network net("http");
  net.StartServer();
  auto client = net::HttpClient::Create(net.url());
  ASSERT_TRUE(client.ok());
  // A body over the 1 MiB limit is refused as soon as its length is known.
  std::string big = RawExchange(net.port(),
                                "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: "
                                "application/json\r\nContent-Length: 2097152\r\n\r\n{\"a\":");
  EXPECT_NE(big.find("413"), std::string::npos) << big;
  auto wrong_type = client->Send("POST", "/v1/jobs", "{}", "text/plain");
  ASSERT_TRUE(wrong_type.ok());
  EXPECT_EQ(wrong_type->status, 400);
  EXPECT_NE(wrong_type->body.find("Content-Type"), std::string::npos);
  // A raw malformed request line.
  std::string raw = RawExchange(net.port(), "BLAH\r\n\r\n");
  EXPECT_NE(raw.find("400 Bad Request"), std::string::npos) << raw;
  std::string huge_header =
      "GET /healthz HTTP/1.1\r\nX-Big: " + std::string(40000, 'a') + "\r\n\r\n";
  raw = RawExchange(net.port(), huge_header);
  EXPECT_NE(raw.find("431"), std::string::npos) << raw.substr(0, 200);
  auto health = client->Send("GET", "/healthz");
  ASSERT_TRUE(health.ok());
  EXPECT_EQ(health->status, 200);

  // Hostile bodies: each a 400 in the one error shape, saying what is wrong.
  auto refused = [&](const std::string& body, const std::string& words) {
    auto r = client->Send("POST", "/v1/jobs", body);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->status, 400) << body.substr(0, 80) << " -> " << r->body;
    Json j = Json::parse(r->body, nullptr, false);
    ASSERT_TRUE(j.is_object() && j.contains("error")) << r->body;
    EXPECT_NE(j["error"]["message"].get<std::string>().find(words), std::string::npos) << r->body;
  };
  refused(std::string(100'000, '[') + std::string(100'000, ']'), "nested deeper than 64");
  refused("{\"name\":\"caf\xc3\x28\"}", "malformed JSON");  // invalid UTF-8
  refused("{\"name\":\"\xff\xfe\"}", "malformed JSON");
  refused("{\"work\":{\"fp16_eflop\":1e309}}", "out of range");  // used to drop the connection
  const std::string job_prefix =
      R"({"name":"x","tenant":"t","work":{"fp16_eflop":1},"dataset":{"site":")" +
      std::string(kBeijing) + R"(","size_gb":1},"run":{"command":"true"},)";
  refused(job_prefix + R"("resources":{"cards":18446744073709551616}})",
          "cards: expected an integer");
  refused(job_prefix + R"("resources":{"cards":9223372036854775807}})", "cards");
  refused(job_prefix + R"("resources":{"cards":-1}})", "cards");
  refused(job_prefix + R"("resources":{"cards":1},"budget_cny":-1e300})", "budget_cny");
  refused(job_prefix + R"("resources":{"cards":1},"priority":-9223372036854775809})", "priority");
  // Invalid UTF-8 and traversal in ids and paths: refused, and the reply is
  // still valid JSON (the bytes are replaced, never echoed raw).
  for (const std::string target :
       {"/v1/jobs/\xff\xfe", "/v1/sites/\xff/x/y", "/v1/jobs/../../etc/passwd",
        "/v1/sites/cn.nx/..%2f..%2fetc/passwd",
        "/v1/jobs/job-000000000001/logs?offset=99999999999999999999"}) {
    std::string raw = RawExchange(
        net.port(), "GET " + target + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    EXPECT_NE(raw.find("HTTP/1.1 4"), std::string::npos) << target << ": " << raw.substr(0, 200);
    size_t body_at = raw.find("\r\n\r\n");
    ASSERT_NE(body_at, std::string::npos) << raw;
    EXPECT_FALSE(Json::parse(raw.substr(body_at + 4), nullptr, false).is_discarded()) << raw;
  }

  // Slow clients (slowloris): 200 connections that send half a request
  // line and stall hold no thread; other clients are served meanwhile, as
  // fast as before (printed beside the same requests without them).
  auto slowest_of_50 = [&] {
    double worst = 0;
    for (int i = 0; i < 50; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      auto r = client->Send("GET", "/v1/jobs?limit=5");
      worst = std::max(
          worst,
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      EXPECT_TRUE(r.ok() && r->status == 200);
    }
    return worst;
  };
  const double before_ms = slowest_of_50();
  std::vector<int> slow;
  for (int i = 0; i < 200; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(net.port()));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    const std::string part = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    ASSERT_EQ(::write(fd, part.data(), part.size()), static_cast<ssize_t>(part.size()));
    slow.push_back(fd);
  }
  const double during_ms = slowest_of_50();
  std::printf("50 requests: slowest %.1f ms alone, %.1f ms beside 200 stalled clients\n", before_ms,
              during_ms);
  for (int fd : slow) ::close(fd);
  CommandResult down = RunShell(std::string(CPN_BINARY) + " jobs --server http://127.0.0.1:1");
  EXPECT_EQ(down.exit_code, 1);
  EXPECT_NE(down.out.find("cannot reach cpn server"), std::string::npos);
}

TEST(Integration, DevDemoRunsTheWholeNetworkAndExitsZero) {
  CommandResult r = RunShell(std::string(CPN_BINARY) + " dev --demo");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("5 of 5 jobs succeeded"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("ct-segmentation-train"), std::string::npos);
  EXPECT_NE(r.out.find("Zhongwei"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("buying"), std::string::npos);
}

std::string SmallJob(const std::string& name, int cards, const std::string& command,
                     const std::string& accelerator = "") {
  Json j{{"name", name},
         {"tenant", "bj-health"},
         {"policy", "cheapest"},
         {"resources", {{"cards", cards}}},
         {"work", {{"fp16_eflop", 0.01}}},
         {"dataset", {{"site", kBeijing}, {"size_gb", 0}, {"residency", "country"}}},
         {"run", {{"command", command}}}};
  if (!accelerator.empty()) j["resources"]["accelerator"] = accelerator;
  return j.dump();
}

Json WaitForEnd(Network& net, const std::string& id, int timeout_ms = 120'000) {
  Json job;
  EXPECT_TRUE(WaitUntil(
      [&] {
        job = net.CliJson("job " + id);
        std::string s = job.value("state", "");
        return s == "succeeded" || s == "failed" || s == "cancelled";
      },
      timeout_ms))
      << job.dump();
  return job;
}

// Needs the single-machine Slurm of scripts/start-slurm.sh (scripts/test.sh
// starts it): partition `gpu` of 2 nodes x 4 fake GPUs.
TEST(Integration, JobsRunUnderRealSlurm) {
  Network net("slurm");
  net.StartServer();
  const Site* zw = net.topology().FindSite(kZhongwei);
  ASSERT_NE(zw, nullptr);
  std::string toml = fmt::format(
      "server = \"{}\"\nheartbeat_s = 0.2\nwork_dir = \"{}/work-slurm\"\nexecutor = \"slurm\"\n\n"
      "[site]\nid = \"{}\"\nname = \"{}\"\ncity = \"{}\"\narea = \"{}\"\njurisdiction = \"{}\"\n"
      "pue = 1.1\nelectricity_cny_per_kwh = 0.36\ncarbon_kg_per_kwh = 0.6\ngreen_share = 0.6\n\n"
      "[[pools]]\nname = \"a800\"\naccelerator = \"nvidia-a800-sxm\"\npartition = \"gpu\"\n"
      "price_cny_per_card_hour = 6.0\n",
      net.url(), net.dir(), zw->id, zw->name, zw->city, zw->area, zw->jurisdiction);
  net.StartAgent(kZhongwei, toml);
  ASSERT_TRUE(WaitUntil([&] { return net.Registered() == 1; }));
  // The pool's size is Slurm's: 2 nodes x 4 GPUs.
  Json sites = net.CliJson("sites");
  EXPECT_EQ(sites["sites"][0]["site"]["pools"][0]["cards"], 8) << sites.dump(2);
  ASSERT_TRUE(WaitUntil([&] {
    Json s = net.CliJson("sites");
    const Json& pools = s["sites"][0]["telemetry"]["pools"];
    return pools.is_array() && !pools.empty() && pools[0].value("source", "") == "slurm";
  }));

  Json ok = net.CliJson("submit " + net.WriteFile("ok.json", SmallJob("ok", 2,
                                                                      "echo devices=$CUDA_"
                                                                      "VISIBLE_DEVICES; echo "
                                                                      "done")));
  Json bad = net.CliJson("submit " + net.WriteFile("bad.json", SmallJob("bad", 1, "exit 7")));
  Json big = net.CliJson("submit " + net.WriteFile("big.json", SmallJob("big", 6, "true")));
  Json slow = net.CliJson("submit " + net.WriteFile("slow.json", SmallJob("slow", 1, "sleep 60")));

  Json done = WaitForEnd(net, ok["id"]);
  EXPECT_EQ(done["state"], "succeeded") << done.dump(2);
  std::string logs = net.Cli("logs " + ok["id"].get<std::string>()).out;
  // Two of a node's four fake GPUs, whichever Slurm picked.
  size_t at = logs.find("devices=");
  ASSERT_NE(at, std::string::npos) << logs;
  std::string devices = logs.substr(at + 8, 9);  // "a,b\ndone\n"
  EXPECT_TRUE(devices.size() == 9 && std::isdigit(devices[0]) && devices[1] == ',' &&
              std::isdigit(devices[2]) && devices[0] != devices[2] &&
              devices.substr(3) == "\ndone\n")
      << logs;

  Json failed = WaitForEnd(net, bad["id"]);
  EXPECT_EQ(failed["state"], "failed");
  EXPECT_EQ(failed["exit_code"], 7) << failed.dump(2);

  // 6 cards fit the 8-card pool, but no node has 6: Slurm says so, and so
  // does the job.
  Json refused = WaitForEnd(net, big["id"]);
  EXPECT_EQ(refused["state"], "failed");
  EXPECT_NE(refused["reason"].get<std::string>().find(
                "Slurm refused the job: sbatch: error: Batch job submission failed: Requested "
                "node configuration is not available"),
            std::string::npos)
      << refused.dump(2);

  ASSERT_TRUE(WaitUntil(
      [&] { return net.CliJson("job " + slow["id"].get<std::string>())["state"] == "running"; }));
  CommandResult squeue = RunShell("squeue -h -n cpn-" + slow["id"].get<std::string>() + " -o %T");
  EXPECT_NE(squeue.out.find("RUNNING"), std::string::npos) << squeue.out;
  EXPECT_EQ(net.Cli("cancel " + slow["id"].get<std::string>()).exit_code, 0);
  Json cancelled = WaitForEnd(net, slow["id"]);
  EXPECT_EQ(cancelled["state"], "cancelled");
  squeue = RunShell("squeue -h -t all -n cpn-" + slow["id"].get<std::string>() + " -o %T");
  EXPECT_NE(squeue.out.find("CANCELLED"), std::string::npos) << squeue.out;

  // The agent is killed while a job runs under Slurm and started again: it
  // takes the job back from Slurm (no second sbatch, no second placement),
  // and the job ends once, with its whole log. Its time limit went to Slurm.
  Json spec = Json::parse(SmallJob("survivor", 1, "echo started; sleep 6; echo survived"));
  spec["run"]["time_limit_h"] = 0.5;
  Json survivor = net.CliJson("submit " + net.WriteFile("survivor.json", spec.dump()));
  const std::string sid = survivor["id"];
  ASSERT_TRUE(WaitUntil([&] { return net.CliJson("job " + sid)["state"] == "running"; }));
  CommandResult limit = RunShell("squeue -h -n cpn-" + sid + " -o %l");
  EXPECT_NE(limit.out.find("30:00"), std::string::npos) << limit.out;
  net.KillAgent(0);
  net.RestartAgent(0);
  Json survived = WaitForEnd(net, sid);
  EXPECT_EQ(survived["state"], "succeeded") << survived.dump(2);
  EXPECT_EQ(survived.value("attempts", -1), 1) << survived.dump(2);
  std::string survivor_log = net.Cli("logs " + sid).out;
  EXPECT_NE(survivor_log.find("started\n"), std::string::npos) << survivor_log;
  EXPECT_NE(survivor_log.find("survived\n"), std::string::npos) << survivor_log;
  CommandResult runs = RunShell("squeue -h -t all -n cpn-" + sid + " -o %i | wc -l");
  EXPECT_EQ(runs.out, "1\n") << "Slurm jobs for " << sid << ": " << runs.out;
}

// 500 jobs from concurrent clients while the server is killed with SIGKILL
// three times and an agent once: every accepted job ends in exactly one
// terminal state, none is lost or duplicated.
TEST(Integration, ChaosNoJobIsLostOrDuplicated) {
  Network net("chaos");
  // A 10 s lease: longer than an agent's longest retry backoff (5 s), so a
  // server restart alone never costs a site its lease.
  net.StartServer(0, {"--heartbeat-timeout-s", "10"});
  std::vector<size_t> agents;
  for (const char* s : {kZhongwei, kQingyang, kBeijing}) agents.push_back(net.StartAgent(s));
  ASSERT_TRUE(WaitUntil([&] { return net.Registered() == 3; }));
  std::string file = net.WriteFile("chaos.json", SmallJob("chaos", 1, "sleep 0.3"));

  const int kClients = 5, kPerClient = 100;
  std::vector<std::vector<std::string>> accepted(kClients);
  std::vector<int> refused(kClients, 0);
  std::atomic<int> submitted{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      for (int i = 0; i < kPerClient; ++i) {
        // Each submission retries until the server is back; its key makes
        // the retries safe.
        CommandResult r = RunShell(fmt::format("{} submit {} --retries 30 --json --server {}",
                                               CPN_BINARY, file, net.url()));
        Json j = Json::parse(r.out, nullptr, false);
        if (r.exit_code == 0 && j.is_object() && j.contains("id")) {
          accepted[c].push_back(j["id"]);
        } else {
          refused[c]++;
        }
        submitted++;
      }
    });
  }
  // The chaos: three server kills spread over the submissions, one agent
  // killed and restarted.
  for (int k = 0; k < 3; ++k) {
    ASSERT_TRUE(WaitUntil([&] { return submitted >= 100 * (k + 1); }, 180'000));
    net.KillServer();
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    net.RestartServer();
    if (k == 1) {
      net.KillAgent(agents[0]);
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      net.RestartAgent(agents[0]);
    }
  }
  for (auto& t : clients) t.join();

  std::set<std::string> ids;
  size_t accepted_total = 0;
  int refused_total = 0;
  for (int c = 0; c < kClients; ++c) {
    accepted_total += accepted[c].size();
    refused_total += refused[c];
    ids.insert(accepted[c].begin(), accepted[c].end());
  }
  std::map<std::string, int> by_state;
  int one_terminal = 0, attempts_over_one = 0;
  for (const auto& id : ids) {
    Json job = WaitForEnd(net, id, 180'000);
    by_state[job.value("state", "?")]++;
    int terminal = 0;
    for (const auto& e : job["events"]) {
      terminal += e["state"] == "succeeded" || e["state"] == "failed" || e["state"] == "cancelled";
    }
    one_terminal += terminal == 1;
    attempts_over_one += job.value("attempts", 0) > 1;
  }
  // The server's own count: every job it holds was accepted by a client.
  size_t on_server = 0;
  std::string page;
  do {
    Json list = net.CliJson("jobs --limit 1000" + (page.empty() ? "" : " --page-token " + page));
    on_server += list["jobs"].size();
    page = list.value("next_page_token", "");
  } while (!page.empty());
  std::printf(
      "chaos: %d submissions, %zu accepted (%zu distinct ids), %d refused, %zu jobs on the "
      "server; succeeded %d, failed %d, cancelled %d; %d with exactly one terminal event; %d "
      "placed more than once\n",
      kClients * kPerClient, accepted_total, ids.size(), refused_total, on_server,
      by_state["succeeded"], by_state["failed"], by_state["cancelled"], one_terminal,
      attempts_over_one);
  EXPECT_EQ(refused_total, 0);
  EXPECT_EQ(accepted_total, static_cast<size_t>(kClients * kPerClient));
  EXPECT_EQ(ids.size(), accepted_total);  // no id handed out twice
  EXPECT_EQ(on_server, ids.size());       // no duplicate job behind a retry
  EXPECT_EQ(one_terminal, static_cast<int>(ids.size()));
  EXPECT_EQ(by_state["succeeded"] + by_state["failed"] + by_state["cancelled"],
            static_cast<int>(ids.size()));
  EXPECT_EQ(by_state["succeeded"], static_cast<int>(ids.size()));
}

}  // namespace
}  // namespace cpn

namespace cpn {
namespace {

// A site's agent with a data root runs the transfer service; `cpn transfer`
// finds it through the platform: FILE SITE_ID:PATH delivers a file,
// SITE_ID:PATH DIR brings it back, SITE_ID:PATH SITE_ID:PATH moves it from one
// site's agent straight to another's.
TEST(Integration, TransferToFromAndBetweenSitesThroughTheirAgents) {
  Network net("xfer-site");
  net.StartServer();
  auto start_with_data_root = [&](const char* id, const std::string& name) {
    const Site* site = net.topology().FindSite(id);
    std::string toml = AgentConfigToToml(*site, net.url(), net.dir() + "/work-" + name, 200);
    const std::string root = net.dir() + "/data-" + name;
    toml.replace(
        toml.find("heartbeat_s"), 0,
        "data_root = \"" + root + "\"\ntransfer_listen = \"127.0.0.1\"\ntransfer_port = 0\n");
    net.StartAgent(id, toml);
    return root;
  };
  const std::string data_root = start_with_data_root(kZhongwei, "zw");
  const std::string qy_root = start_with_data_root(kQingyang, "qy");
  ASSERT_TRUE(WaitUntil([&] { return net.Registered() == 2; }));
  std::ofstream(net.dir() + "/weights.bin") << std::string(3 << 20, 'w');
  CommandResult sent;
  ASSERT_TRUE(WaitUntil(
      [&] {  // the first heartbeat carries the endpoint
        sent = RunShell(fmt::format("{} transfer {}/weights.bin {}:models/m1 --server {}",
                                    CPN_BINARY, net.dir(), kZhongwei, net.url()));
        return sent.exit_code == 0;
      },
      10'000))
      << sent.out;
  EXPECT_NE(sent.out.find("1 file(s)"), std::string::npos) << sent.out;
  std::ifstream in(data_root + "/models/m1/weights.bin", std::ios::binary);
  std::string got((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(got, std::string(3 << 20, 'w'));
  auto read = [](const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  };
  // Back from the site into a local directory.
  CommandResult pulled = RunShell(fmt::format("{} transfer {}:models/m1 {}/back --server {}",
                                              CPN_BINARY, kZhongwei, net.dir(), net.url()));
  ASSERT_EQ(pulled.exit_code, 0) << pulled.out;
  EXPECT_NE(pulled.out.find("received"), std::string::npos) << pulled.out;
  EXPECT_EQ(read(net.dir() + "/back/weights.bin"), std::string(3 << 20, 'w'));
  // Site to site (once Qingyang's endpoint is known), then again: nothing moves.
  CommandResult relayed;
  ASSERT_TRUE(WaitUntil(
      [&] {
        relayed = RunShell(fmt::format("{} transfer {}:models/m1 {}:mirror/m1 --server {} --json",
                                       CPN_BINARY, kZhongwei, kQingyang, net.url()));
        return relayed.exit_code == 0;
      },
      10'000))
      << relayed.out;
  EXPECT_NE(relayed.out.find("relayed"), std::string::npos) << relayed.out;
  EXPECT_EQ(read(qy_root + "/mirror/m1/weights.bin"), std::string(3 << 20, 'w'));
  CommandResult again = RunShell(fmt::format("{} transfer {}:models/m1 {}:mirror/m1 --server {}",
                                             CPN_BINARY, kZhongwei, kQingyang, net.url()));
  ASSERT_EQ(again.exit_code, 0) << again.out;
  EXPECT_NE(again.out.find("relayed 0.0 MB"), std::string::npos) << again.out;
  // Two local paths, and a path missing at the site, are refused with the reason.
  CommandResult local = RunShell(
      fmt::format("{} transfer {}/weights.bin {}/elsewhere", CPN_BINARY, net.dir(), net.dir()));
  EXPECT_NE(local.exit_code, 0);
  EXPECT_NE(local.out.find("both local"), std::string::npos) << local.out;
  CommandResult missing = RunShell(fmt::format("{} transfer {}:models/nope {}/x --server {}",
                                               CPN_BINARY, kZhongwei, net.dir(), net.url()));
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.out.find("does not exist"), std::string::npos) << missing.out;
  // A site without a transfer service says so.
  CommandResult none = RunShell(fmt::format("{} transfer {}/weights.bin {}:x --server {}",
                                            CPN_BINARY, net.dir(), kBeijing, net.url()));
  EXPECT_NE(none.exit_code, 0);
  EXPECT_NE(none.out.find(kBeijing), std::string::npos) << none.out;
}

// A job placed away from its data: the data site's agent stages the dataset
// (over TLS) to the chosen site before the job starts; the job reads it there. A second
// job on the same data finds it already there, verified, and nothing moves.
TEST(Integration, DatasetsAreStagedBeforeTheJobStarts) {
  Network net("staging");
  net.StartServer();
  // The transfer services run TLS with one self-signed certificate, which
  // each agent also trusts for the sites it stages to.
  const std::string cert = net.dir() + "/cert.pem", key = net.dir() + "/key.pem";
  ASSERT_EQ(RunShell("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
                     "-addext subjectAltName=IP:127.0.0.1 -keyout " +
                     key + " -out " + cert)
                .exit_code,
            0);
  auto with_data_root = [&](const char* site_id, const std::string& name) {
    std::string toml = AgentConfigToToml(*net.topology().FindSite(site_id), net.url(),
                                         net.dir() + "/work-" + name, 200);
    toml.replace(toml.find("heartbeat_s"), 0,
                 "data_root = \"" + net.dir() + "/data-" + name +
                     "\"\ntransfer_listen = \"127.0.0.1\"\ntransfer_port = 0\n" +
                     "transfer_tls_cert = \"" + cert + "\"\ntransfer_tls_key = \"" + key +
                     "\"\ntransfer_tls_ca = \"" + cert + "\"\n");
    return toml;
  };
  fs::create_directories(net.dir() + "/data-bj/corpus/part");
  std::ofstream(net.dir() + "/data-bj/corpus/part/a.txt") << "tokens from beijing\n";
  std::ofstream(net.dir() + "/data-bj/corpus/b.bin") << std::string(5 << 20, 'b');
  net.StartAgent(kBeijing, with_data_root(kBeijing, "bj"));
  net.StartAgent(kZhongwei, with_data_root(kZhongwei, "zw"));
  ASSERT_TRUE(WaitUntil([&] { return net.Registered() == 2; }));
  auto job = [&](const std::string& name) {
    return Json{
        {"name", name},
        {"tenant", "bj-health"},
        {"policy", "cheapest"},
        {"resources", {{"cards", 1}}},
        {"work", {{"fp16_eflop", 0.01}}},
        {"dataset",
         {{"site", kBeijing}, {"size_gb", 0.005}, {"path", "corpus"}, {"residency", "country"}}},
        {"run", {{"command", "cat $CPN_DATASET_DIR/part/a.txt; ls $CPN_DATASET_DIR"}}}}
        .dump();
  };
  Json first = net.CliJson("submit " + net.WriteFile("j1.json", job("first")));
  ASSERT_EQ(first.value("site", ""), kZhongwei) << first.dump(2);  // cheaper, away from the data
  Json done = WaitForEnd(net, first["id"]);
  ASSERT_EQ(done["state"], "succeeded") << done.dump(2);
  EXPECT_EQ(done["staging"]["state"], "done") << done.dump(2);
  EXPECT_GE(done["staging"]["bytes_sent"].get<int64_t>(), 5 << 20);
  std::string logs = net.Cli("logs " + first["id"].get<std::string>()).out;
  EXPECT_NE(logs.find("tokens from beijing"), std::string::npos) << logs;
  EXPECT_NE(logs.find("b.bin"), std::string::npos) << logs;
  std::string events = net.Cli("job " + first["id"].get<std::string>()).out;
  EXPECT_NE(events.find("dataset staged from"), std::string::npos) << events;
  auto http = net::HttpClient::Create(net.url());
  auto zw = http->Send("GET", "/v1/sites/cn.nx/zwcloud/zw-01");
  ASSERT_TRUE(zw.ok());
  EXPECT_EQ(Json::parse(zw->body)["telemetry"]["transfer"]["tls"], true) << zw->body;

  Json second = net.CliJson("submit " + net.WriteFile("j2.json", job("second")));
  Json done2 = WaitForEnd(net, second["id"]);
  ASSERT_EQ(done2["state"], "succeeded") << done2.dump(2);
  EXPECT_EQ(done2["staging"]["bytes_sent"], 0) << done2.dump(2);  // found there by checksum
}

// Bytes a process has read through read-like system calls (/proc/PID/io).
int64_t ReadBytes(pid_t pid) {
  std::ifstream io("/proc/" + std::to_string(pid) + "/io");
  std::string key;
  int64_t value = 0;
  while (io >> key >> value) {
    if (key == "rchar:") return value;
  }
  return -1;
}

// `cpn transfer` killed with SIGKILL mid-transfer, then run again: the file
// arrives intact and the two runs together send less than 10% more than it.
TEST(Integration, TransferResumesAfterSigkillWithLittleResent) {
  fs::path dir = fs::temp_directory_path() / fmt::format("cpn-xfer-kill-{}", getpid());
  fs::remove_all(dir);
  fs::create_directories(dir / "src");
  const int64_t size = 128ll << 20;
  {
    std::ofstream out(dir / "src/data.bin", std::ios::binary);
    std::string block(1 << 20, '\0');
    uint64_t x = 88172645463325252ull;
    for (int64_t done = 0; done < size; done += static_cast<int64_t>(block.size())) {
      for (auto& c : block) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        c = static_cast<char>(x);
      }
      out.write(block.data(), static_cast<std::streamsize>(block.size()));
    }
  }
  auto rx = cli::Spawn({CPN_BINARY, "transfer", "serve", "--root", (dir / "root").string(),
                        "--port", "0", "--port-file", (dir / "port").string()},
                       (dir / "rx.log").string());
  ASSERT_TRUE(rx.ok());
  ASSERT_TRUE(WaitUntil([&] { return fs::exists(dir / "port"); }, 10'000));
  int port = 0;
  std::ifstream(dir / "port") >> port;
  const std::string dst = fmt::format("127.0.0.1:{}:k", port);
  // Slowed to 320 Mbit/s (about 3.4 s) so it can be stopped half way.
  auto tx = cli::Spawn({CPN_BINARY, "transfer", (dir / "src/data.bin").string(), dst, "--streams",
                        "2", "--chunk-mib", "1", "--rate-limit-mbps", "320"},
                       (dir / "tx.log").string());
  ASSERT_TRUE(tx.ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(1800));
  ::kill(*tx, SIGSTOP);  // hold it still to read what it sent, then kill it
  // The sender reads the file once for its manifest, then each chunk just
  // before sending it: what it read beyond the file's size bounds what it
  // sent from above.
  const int64_t first_run_bytes = ReadBytes(*tx) - size;
  ::kill(*tx, SIGKILL);
  int status = 0;
  ::waitpid(*tx, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_FALSE(fs::exists(dir / "root/k/data.bin"));  // not visible half-written
  ASSERT_GT(first_run_bytes, size / 10);
  ASSERT_LT(first_run_bytes, size);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CommandResult again = RunShell(
      fmt::format("{} transfer {} {} --json", CPN_BINARY, (dir / "src/data.bin").string(), dst));
  ASSERT_EQ(again.exit_code, 0) << again.out;
  Json figures = Json::parse(again.out.substr(again.out.rfind('{')));
  const int64_t resent = figures["bytes_sent"].get<int64_t>();
  const int64_t extra = first_run_bytes + resent - size;
  std::printf("transfer kill: first run sent %lld bytes, second %lld, file %lld: %.2f%% extra\n",
              static_cast<long long>(first_run_bytes), static_cast<long long>(resent),
              static_cast<long long>(size), 100.0 * static_cast<double>(extra) / size);
  EXPECT_LT(extra, size / 10);
  EXPECT_GT(figures["chunks_skipped"].get<int64_t>(), 0);
  CommandResult same = RunShell(fmt::format("cmp {} {}", (dir / "src/data.bin").string(),
                                            (dir / "root/k/data.bin").string()));
  EXPECT_EQ(same.exit_code, 0) << same.out;
  cli::Stop(*rx);
  fs::remove_all(dir);
}

// With authentication on (the default): nothing works without a token; the
// first operator token is in <db>.operator-token; a tenant's token submits
// and sees only its tenant's jobs; a revoked token stops working at once; an
// agent with its site's token registers and runs jobs; the audit log says
// who did what.
TEST(Integration, TokensRolesAndTheAuditLogThroughTheCli) {
  Network net("auth");
  net.StartServer(0, {"--auth", "on"});
  const std::string op_file = net.dir() + "/cpn.db.operator-token";
  ASSERT_TRUE(fs::exists(op_file));
  EXPECT_EQ(fs::status(op_file).permissions() & fs::perms::group_read, fs::perms::none);
  CommandResult anon = net.Cli("sites");
  EXPECT_EQ(anon.exit_code, 1);
  EXPECT_NE(anon.out.find("needs a token"), std::string::npos) << anon.out;
  auto as = [&](const std::string& token_file, const std::string& args) {
    return net.Cli(args + " --token-file " + token_file);
  };
  // The operator issues a site token and a tenant token.
  const std::string site_token = net.dir() + "/zw.token", tenant_token = net.dir() + "/bj.token";
  CommandResult issued = as(op_file, fmt::format("token create --role site --subject {} --user "
                                                 "agent --out {}",
                                                 kZhongwei, site_token));
  ASSERT_EQ(issued.exit_code, 0) << issued.out;
  issued = as(op_file,
              "token create --role tenant --subject bj-health --user alice --out " + tenant_token);
  ASSERT_EQ(issued.exit_code, 0) << issued.out;
  // The agent runs with its site's token.
  const Site* zw = net.topology().FindSite(kZhongwei);
  net.StartAgent(kZhongwei, "token_file = \"" + site_token + "\"\n" +
                                AgentConfigToToml(*zw, net.url(), net.dir() + "/work-zw", 200));
  ASSERT_TRUE(WaitUntil([&] {
    CommandResult r = as(op_file, "sites --json");
    return r.exit_code == 0 && Json::parse(r.out, nullptr, false)["sites"].size() == 1;
  }));
  // The tenant submits its own job; one for another tenant is refused.
  Json job = Json::parse(SmallJob("mine", 1, "echo from-alice"));
  CommandResult sub =
      as(tenant_token, "submit " + net.WriteFile("mine.json", job.dump()) + " --json");
  ASSERT_EQ(sub.exit_code, 0) << sub.out;
  const std::string id = Json::parse(sub.out)["id"];
  job["tenant"] = "sh-finance";
  CommandResult theirs = as(tenant_token, "submit " + net.WriteFile("theirs.json", job.dump()));
  EXPECT_EQ(theirs.exit_code, 1);
  EXPECT_NE(theirs.out.find("may not submit jobs for tenant sh-finance"), std::string::npos)
      << theirs.out;
  CommandResult logs;
  ASSERT_TRUE(WaitUntil([&] {
    logs = as(tenant_token, "logs " + id);
    return logs.out.find("from-alice") != std::string::npos;
  })) << logs.out;
  // Once it ends it is on the tenant's bill and the provider's statement.
  ASSERT_TRUE(WaitUntil([&] {
    return Json::parse(as(tenant_token, "job " + id + " --json").out, nullptr, false)
               .value("state", "") == "succeeded";
  }));
  Json bill = Json::parse(as(tenant_token, "bill --json").out);
  ASSERT_EQ(bill["lines"].size(), 1u) << bill.dump();
  EXPECT_EQ(bill["lines"][0]["job"], id);
  EXPECT_EQ(bill["tenant"], "bj-health");
  CommandResult csv = as(tenant_token, "bill --csv");
  EXPECT_EQ(csv.out.rfind("job,site,accelerator,", 0), 0u) << csv.out;
  EXPECT_NE(csv.out.find(id), std::string::npos) << csv.out;
  Json statement = Json::parse(as(op_file, "statement --provider cpn:cn.nx/zwcloud --json").out);
  ASSERT_EQ(statement["lines"].size(), 1u) << statement.dump();
  EXPECT_EQ(statement["totals"]["charged_fen"].get<int64_t>(),
            statement["totals"]["fee_fen"].get<int64_t>() +
                statement["totals"]["revenue_fen"].get<int64_t>());
  EXPECT_EQ(statement["totals"]["charged_fen"], bill["totals"]["total_fen"]);
  CommandResult table = as(tenant_token, "bill");
  EXPECT_NE(table.out.find("Invoice: tenant bj-health"), std::string::npos) << table.out;
  // Another tenant cannot see it.
  const std::string other_token = net.dir() + "/sh.token";
  ASSERT_EQ(
      as(op_file, "token create --role tenant --subject sh-finance --out " + other_token).exit_code,
      0);
  CommandResult peek = as(other_token, "job " + id);
  EXPECT_EQ(peek.exit_code, 1);
  EXPECT_NE(peek.out.find("not found"), std::string::npos) << peek.out;
  // Revoked: refused at once.
  Json tokens = Json::parse(as(op_file, "token list --json").out);
  std::string alice_id;
  for (const auto& t : tokens["tokens"]) {
    if (t["user"] == "alice") alice_id = t["id"];
  }
  ASSERT_FALSE(alice_id.empty()) << tokens.dump();
  ASSERT_EQ(as(op_file, "token revoke " + alice_id).exit_code, 0);
  CommandResult after = as(tenant_token, "jobs");
  EXPECT_EQ(after.exit_code, 1);
  EXPECT_NE(after.out.find("invalid, expired or revoked token"), std::string::npos) << after.out;
  // The audit log has it all, with who and the rule.
  Json audit = Json::parse(as(op_file, "audit --json").out);
  std::set<std::string> seen;
  for (const auto& a : audit["audit"]) {
    seen.insert(a["principal"].get<std::string>() + " " + a["action"].get<std::string>() + " " +
                a["outcome"].get<std::string>());
  }
  for (const std::string& want :
       {std::string("operator:-/root token.create ok"),
        "site:" + std::string(kZhongwei) + "/agent site.register ok",
        std::string("tenant:bj-health/alice job.submit ok"),
        std::string("tenant:bj-health/alice job.submit permission_denied"),
        std::string("operator:-/root token.revoke ok")}) {
    EXPECT_TRUE(seen.count(want)) << want << " missing from " << audit.dump(1);
  }
  CommandResult not_op = as(other_token, "audit");
  EXPECT_EQ(not_op.exit_code, 1);
  EXPECT_NE(not_op.out.find("may not read the audit log"), std::string::npos) << not_op.out;
}

// HTTPS with mutual TLS for agents: the server presents its certificate;
// an agent with its site's token and client certificate runs jobs; the same
// token without the certificate is refused; the CLI trusts the server's CA
// through CPN_TLS_CA.
TEST(Integration, HttpsAndAgentsWithTheirSitesCertificates) {
  Network net("https");
  testing::TlsFiles tls;
  ASSERT_TRUE(testing::MakeTlsFiles(net.dir() + "/tls", &tls));
  std::string zw_cert, zw_key;
  ASSERT_TRUE(
      testing::MakeClientCert(net.dir() + "/tls", tls, "zw", kZhongwei, true, &zw_cert, &zw_key));
  net.StartServer(0, {"--auth", "on", "--tls-cert", tls.server_cert, "--tls-key", tls.server_key,
                      "--tls-client-ca", tls.ca_cert});
  ASSERT_EQ(net.url().rfind("https://", 0), 0u);
  const std::string op = net.dir() + "/cpn.db.operator-token";
  const std::string env = "CPN_TLS_CA=" + tls.ca_cert + " CPN_TOKEN_FILE=" + op + " ";
  auto cli = [&](const std::string& args) {
    return RunShell(fmt::format("{}{} {} --server {}", env, CPN_BINARY, args, net.url()));
  };
  // Without the CA the CLI refuses the server's certificate.
  CommandResult untrusted = net.Cli("sites --token-file " + op);
  EXPECT_EQ(untrusted.exit_code, 1);
  EXPECT_NE(untrusted.out.find("certificate verify failed"), std::string::npos) << untrusted.out;
  const std::string token = net.dir() + "/zw.token";
  ASSERT_EQ(cli(fmt::format("token create --role site --subject {} --out {}", kZhongwei, token))
                .exit_code,
            0);
  const Site* zw = net.topology().FindSite(kZhongwei);
  const std::string base = AgentConfigToToml(*zw, net.url(), net.dir() + "/work-zw", 200);
  // The token alone, without the site's certificate: refused.
  net.StartAgent(
      kZhongwei,
      fmt::format("token_file = \"{}\"\nserver_tls_ca = \"{}\"\n", token, tls.ca_cert) + base);
  const std::string agent_log = net.dir() + "/logs/agent-zw-01.log";
  EXPECT_TRUE(WaitUntil(
      [&] {
        std::ifstream in(agent_log);
        std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        return text.find("needs the site's client certificate") != std::string::npos;
      },
      20'000))
      << agent_log;
  Json sites = Json::parse(cli("sites --json").out, nullptr, false);
  EXPECT_EQ(sites["sites"].size(), 0u) << sites.dump();
  net.KillAgent(0);
  // With it: registers, and runs a job.
  net.StartAgent(kZhongwei,
                 fmt::format("token_file = \"{}\"\nserver_tls_ca = \"{}\"\ntls_cert = \"{}\"\n"
                             "tls_key = \"{}\"\n",
                             token, tls.ca_cert, zw_cert, zw_key) +
                     base);
  ASSERT_TRUE(WaitUntil([&] {
    Json s = Json::parse(cli("sites --json").out, nullptr, false);
    return s.is_object() && s["sites"].size() == 1;
  }));
  CommandResult sub =
      cli("submit " + net.WriteFile("j.json", SmallJob("tls-job", 1, "echo over-tls")) + " --json");
  ASSERT_EQ(sub.exit_code, 0) << sub.out;
  const std::string id = Json::parse(sub.out)["id"];
  ASSERT_TRUE(WaitUntil([&] {
    return Json::parse(cli("job " + id + " --json").out, nullptr, false).value("state", "") ==
           "succeeded";
  }));
  EXPECT_NE(cli("logs " + id).out.find("over-tls"), std::string::npos);
}

}  // namespace
}  // namespace cpn
