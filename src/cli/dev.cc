#include "src/cli/dev.h"

#include <fmt/format.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "src/agent/agent_config.h"
#include "src/cli/cli.h"
#include "src/cli/format.h"
#include "src/cli/process.h"
#include "src/core/catalog.h"
#include "src/core/data_dir.h"
#include "src/core/topology.h"
#include "src/net/http_client.h"
#include "src/store/store.h"

namespace cpn::cli {
namespace {

namespace fs = std::filesystem;

class Network {
 public:
  ~Network() { StopAll(); }

  Status Add(const std::vector<std::string>& argv, const std::string& log) {
    auto pid = Spawn(argv, log);
    if (!pid.ok()) return pid.status();
    pids_.push_back(*pid);
    return Status::Ok();
  }
  // Agents first, server last, so agents do not spin on a vanished server.
  void StopAll() {
    for (auto it = pids_.rbegin(); it != pids_.rend(); ++it) Stop(*it, 5000);
    pids_.clear();
  }
  bool ServerAlive() const { return !pids_.empty() && !Exited(pids_.front()); }

 private:
  std::vector<pid_t> pids_;
};

Result<Json> Get(const net::HttpClient& c, const std::string& target) {
  auto r = c.Send("GET", target);
  if (!r.ok()) return r.status();
  if (r->status != 200)
    return Internal(fmt::format("GET {}: HTTP {}: {}", target, r->status, r->body));
  return ParseJson(r->body, target);
}

void Sleep(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

std::string SiteName(const Topology& t, const std::string& id) {
  const Site* s = t.FindSite(id);
  return s ? fmt::format("{} ({})", s->name, s->city) : id;
}

}  // namespace

int RunDev(const DevOptions& o) {
  auto catalog = Catalog::LoadDefault();
  if (!catalog.ok()) {
    std::cerr << "error: " << catalog.status().message() << "\n";
    return 1;
  }
  auto data_dir = FindDataDir();
  std::string topology_path = o.topology.empty() ? *data_dir + "/topology/china.json" : o.topology;
  auto topo = Topology::LoadFile(topology_path, *catalog);
  if (!topo.ok()) {
    std::cerr << "error: " << topo.status().message() << "\n";
    return 1;
  }
  std::string dir = o.dir;
  if (dir.empty()) {
    std::string tmpl = (fs::temp_directory_path() / "cpn-dev-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) {
      std::cerr << "error: cannot create a run directory\n";
      return 1;
    }
    dir = tmpl;
  }
  fs::create_directories(dir + "/sites");
  fs::create_directories(dir + "/logs");
  fs::remove(dir + "/server.port");
  const std::string self = SelfPath();
  int port = o.port != 0 ? o.port : (o.demo ? 0 : 8080);

  std::cout << fmt::format("cpn dev: a local computing power network in {}\n", dir);
  Network net;
  Status s = net.Add({self, "server", "--port", std::to_string(port), "--db", dir + "/cpn.db",
                      "--port-file", dir + "/server.port", "--topology", topology_path},
                     dir + "/logs/server.log");
  if (!s.ok()) {
    std::cerr << "error: " << s.message() << "\n";
    return 1;
  }
  std::string port_text;
  for (int i = 0; i < 200 && port_text.empty(); ++i) {
    if (!net.ServerAlive()) break;
    std::ifstream in(dir + "/server.port");
    std::getline(in, port_text);
    if (port_text.empty()) Sleep(50);
  }
  if (port_text.empty()) {
    std::cerr << "error: the server did not start; see " << dir << "/logs/server.log\n";
    return 1;
  }
  std::string url = "http://127.0.0.1:" + port_text;
  std::cout << fmt::format(
      "  server   {}  (log {}/logs/server.log; plain HTTP on loopback only, tokens required)\n",
      url, dir);
  // The server wrote its first operator token before it listened. cpn dev
  // acts as the operator: it issues each site's agent its own token and a
  // token for one tenant's user, to show the roles.
  const std::string operator_token_file = dir + "/cpn.db.operator-token";
  auto operator_token = ReadFile(operator_token_file);
  if (!operator_token.ok()) {
    std::cerr << "error: " << operator_token.status().message() << "\n";
    return 1;
  }
  auto client = net::HttpClient::Create(url);
  client->set_bearer_token(operator_token->substr(0, operator_token->find('\n')));
  auto issue = [&](const std::string& role, const std::string& subject, const std::string& user,
                   const std::string& path) -> Status {
    Json body{{"role", role}, {"subject", subject}, {"user", user}};
    auto r = client->Send("POST", "/v1/tokens", body.dump());
    if (!r.ok()) return r.status();
    if (r->status != 201) return Internal("issuing a token for " + subject + ": " + r->body);
    std::ofstream(path, std::ios::trunc)
        << Json::parse(r->body)["token"].get<std::string>() << "\n";
    fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write);
    return Status::Ok();
  };
  const std::string tenant_token_file = dir + "/tenant-bj-health.token";
  s = issue("tenant", "bj-health", "demo", tenant_token_file);
  if (!s.ok()) {
    std::cerr << "error: " << s.message() << "\n";
    return 1;
  }

  for (const Site& site : topo->sites()) {
    std::string name = site.id.substr(site.id.rfind('/') + 1);
    std::string cfg = dir + "/sites/" + name + ".toml";
    const std::string token_file = dir + "/sites/" + name + ".token";
    s = issue("site", site.id, "agent", token_file);
    if (!s.ok()) {
      std::cerr << "error: " << s.message() << "\n";
      return 1;
    }
    std::ofstream(cfg) << fmt::format("token_file = \"{}\"\n", token_file)
                       << AgentConfigToToml(site, url, dir + "/work/" + name, 500);
    s = net.Add({self, "agent", "--config", cfg}, dir + "/logs/agent-" + name + ".log");
    if (!s.ok()) {
      std::cerr << "error: " << s.message() << "\n";
      return 1;
    }
  }
  size_t registered = 0;
  for (int i = 0; i < 400 && registered < topo->sites().size() && !g_stop; ++i) {
    auto sites = Get(*client, "/v1/sites");
    if (sites.ok()) registered = (*sites)["sites"].size();
    if (registered < topo->sites().size()) Sleep(50);
  }
  std::cout << fmt::format("  agents   {} of {} sites registered\n", registered,
                           topo->sites().size());
  if (registered < topo->sites().size()) {
    std::cerr << "error: not every agent registered; see " << dir << "/logs/\n";
    return 1;
  }

  // Submit the sample jobs.
  std::vector<fs::path> job_files;
  for (const auto& e : fs::directory_iterator(*data_dir + "/jobs/demo")) {
    if (e.path().extension() == ".json") job_files.push_back(e.path());
  }
  std::sort(job_files.begin(), job_files.end());
  std::vector<std::string> ids;
  std::cout << "\nSubmitting " << job_files.size() << " sample jobs:\n";
  for (const auto& f : job_files) {
    auto text = ReadFile(f.string());
    auto r = client->Send("POST", "/v1/jobs", *text);
    if (!r.ok() || r->status != 201) {
      std::cerr << "error: submitting " << f.filename() << ": "
                << (r.ok() ? r->body : r.status().message()) << "\n";
      return 1;
    }
    Json j = Json::parse(r->body);
    ids.push_back(j["id"]);
    std::cout << fmt::format("  {}  {:<24} {}\n", j["id"].get<std::string>(),
                             j["name"].get<std::string>(), j["state"].get<std::string>());
  }

  // Wait for them.
  std::vector<Json> jobs(ids.size());
  bool all_done = false;
  for (int i = 0; i < 1200 && !all_done && !g_stop; ++i) {
    all_done = true;
    for (size_t k = 0; k < ids.size(); ++k) {
      auto j = Get(*client, "/v1/jobs/" + ids[k]);
      if (j.ok()) jobs[k] = *j;
      if (!j.ok() || !IsTerminalState((*j)["state"])) all_done = false;
    }
    if (!all_done) Sleep(100);
  }

  // Report.
  int failures = 0;
  std::cout << "\nResults (estimates are for the full job; the demo runs a short stand-in "
               "process and meters its real card-time):\n";
  for (size_t k = 0; k < ids.size(); ++k) {
    const Json& j = jobs[k];
    if (j.is_null()) continue;
    const Json& order = j["order"];
    const Json& decision = j["decision"];
    bool ok = j["state"] == "succeeded";
    failures += ok ? 0 : 1;
    std::cout << fmt::format("\n[{}] {} — tenant {}, policy {}\n", j["state"].get<std::string>(),
                             j["name"].get<std::string>(), j["tenant"].get<std::string>(),
                             j["spec"]["policy"].get<std::string>());
    if (!order.is_object() || order.empty()) {
      std::cout << "  not placed: " << j["reason"].get<std::string>() << "\n";
      continue;
    }
    std::cout << fmt::format("  ran on   {} x {} at {}\n", order["cards"].get<int64_t>(),
                             order["accelerator"].get<std::string>(), SiteName(*topo, j["site"]));
    std::cout << fmt::format("  why      {}\n", decision["summary"].get<std::string>());
    std::cout << fmt::format(
        "  estimate {} run + {} staging, {} ({} compute + {} data transfer), {} kWh, {} kg CO2\n",
        Hours(order["run_h"]), Hours(order["transfer_h"]), Cny(order["total_cny"]),
        Cny(order["compute_cny"]), Cny(order["transfer_cny"]), Number(order["energy_kwh"], 0),
        Number(order["carbon_kg"], 0));
    if (decision["home"].is_object()) {
      const Json& h = decision["home"];
      double saving = h["total_cny"].get<double>() - order["total_cny"].get<double>();
      std::cout << fmt::format("  at home  {} on {}: {} in {}, {} kg CO2 -> {} {}\n",
                               h["accelerator"].get<std::string>(), SiteName(*topo, h["site"]),
                               Cny(h["total_cny"]), Hours(h["completion_h"]),
                               Number(h["carbon_kg"], 0), saving >= 0 ? "saves" : "costs",
                               Cny(std::abs(saving)));
    } else {
      std::cout << "  at home  " << decision.value("home_note", "-") << "\n";
    }
    if (decision.contains("ownership") && j["spec"]["tenant"] == "bj-health") {
      const Json& w = decision["ownership"];
      std::cout << fmt::format(
          "  buying   {} x {}-card {} servers = {} + {} energy = {} (vs {} on the network)\n",
          w["servers"].get<int64_t>(), w["cards_per_server"].get<int64_t>(),
          w["accelerator"].get<std::string>(), Cny(w["capex_cny"]), Cny(w["energy_cny"]),
          Cny(w["total_cny"]), Cny(order["total_cny"]));
    }
    if (j.contains("metered")) {
      std::cout << fmt::format(
          "  metered  {} card-h of stand-in run = {}; exit code {}\n",
          Number(j["metered"]["card_hours"], 4), Cny(j["metered"]["compute_cny"]),
          j["exit_code"].is_null() ? std::string("-")
                                   : std::to_string(j["exit_code"].get<int64_t>()));
    }
  }
  if (!all_done) {
    std::cerr << "\nerror: not every job finished; see " << dir << "/logs/\n";
    failures++;
  }

  if (o.demo) {
    std::cout << fmt::format("\ncpn dev --demo: {} of {} jobs succeeded; shutting down.\n",
                             ids.size() - static_cast<size_t>(failures > 0 ? failures : 0),
                             ids.size());
    net.StopAll();
    return failures == 0 ? 0 : 1;
  }
  std::cout << fmt::format(
      "\nThe network keeps running. Try:\n"
      "  export CPN_SERVER={}\n"
      "  export CPN_TOKEN_FILE={}   # the operator; or {} (tenant bj-health)\n"
      "  {} sites\n"
      "  {} resources --accelerator ascend-910b\n"
      "  {} quote {}/jobs/demo/1-seed-bj-health-ct-train.json\n"
      "  {} jobs\n"
      "  curl -H \"Authorization: Bearer $(cat $CPN_TOKEN_FILE)\" {}/metrics\n"
      "Press Ctrl-C to stop.\n",
      url, operator_token_file, tenant_token_file, self, self, self, *data_dir, self, url);
  while (!g_stop) Sleep(200);
  std::cout << "stopping...\n";
  net.StopAll();
  return 0;
}

}  // namespace cpn::cli
