#include "src/cli/cli.h"

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <random>
#include <sstream>
#include <thread>

#include "src/agent/agent.h"
#include "src/cli/dev.h"
#include "src/cli/format.h"
#include "src/core/catalog.h"
#include "src/core/data_dir.h"
#include "src/core/ids.h"
#include "src/core/job_spec.h"
#include "src/core/topology.h"
#include "src/exec/command.h"
#include "src/exec/local_executor.h"
#include "src/exec/slurm_executor.h"
#include "src/net/http_client.h"
#include "src/net/http_server.h"
#include "src/sched/explain.h"
#include "src/sched/scheduler.h"
#include "src/server/api.h"
#include "src/server/platform.h"
#include "src/sim/charts.h"
#include "src/sim/convert.h"
#include "src/sim/engine.h"
#include "src/sim/workload.h"
#include "src/store/sqlite_store.h"
#include "src/transfer/transfer.h"

namespace cpn::cli {

std::atomic<bool> g_stop{false};

namespace {

void OnSignal(int) { g_stop = true; }

int Fail(const Status& s) {
  std::cerr << "error: " << s.message() << "\n";
  return 1;
}

std::string DefaultServer() {
  const char* env = std::getenv("CPN_SERVER");
  return env && *env ? env : "http://127.0.0.1:8080";
}

// The caller's API token: --token-file, else $CPN_TOKEN, else the file named
// by $CPN_TOKEN_FILE; "" for none.
std::string g_token_file;

std::string Trimmed(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  return s.substr(i);
}

Result<std::string> CliToken() {
  std::string file = g_token_file;
  if (file.empty()) {
    if (const char* env = std::getenv("CPN_TOKEN"); env && *env) return Trimmed(env);
    if (const char* env = std::getenv("CPN_TOKEN_FILE"); env && *env) file = env;
  }
  if (file.empty()) return std::string();
  auto text = ReadFile(file);
  if (!text.ok()) return text.status().WithContext("token file");
  return Trimmed(*text);
}

// A client for the platform server that sends the caller's token.
Result<net::HttpClient> ClientFor(const std::string& server, int timeout_ms = 10'000) {
  auto client = net::HttpClient::Create(server, timeout_ms);
  if (!client.ok()) return client.status();
  // A private CA for an https server: $CPN_TLS_CA.
  if (const char* ca = std::getenv("CPN_TLS_CA"); ca && *ca) client->set_tls({ca, "", ""});
  auto token = CliToken();
  if (!token.ok()) return token.status();
  client->set_bearer_token(*token);
  return client;
}

Result<std::string> ReadInput(const std::string& path) {
  if (path == "-") {
    std::stringstream ss;
    ss << std::cin.rdbuf();
    return ss.str();
  }
  return ReadFile(path);
}

// Sends a request and returns the JSON reply, or the server's error message.
Result<Json> Call(const std::string& server, const std::string& method, const std::string& target,
                  const std::string& body = "",
                  const std::map<std::string, std::string>& headers = {}) {
  auto client = ClientFor(server);
  if (!client.ok()) return client.status();
  auto r = client->Send(method, target, body, "application/json", headers);
  if (!r.ok()) return r.status();
  Json j = Json::parse(r->body, nullptr, false);
  if (r->status >= 400) {
    std::string msg = j.is_object() && j.contains("error")
                          ? j["error"].value("message", r->body)
                          : fmt::format("HTTP {}: {}", r->status, r->body.substr(0, 300));
    return Status(r->status == 404 ? StatusCode::kNotFound : StatusCode::kInvalidArgument, msg);
  }
  if (j.is_discarded()) return Internal("server sent malformed JSON");
  return j;
}

// ---- server ---------------------------------------------------------------

struct ServerOptions {
  std::string listen = "127.0.0.1";
  int port = 8080;
  std::string db = "cpn.db";
  std::string topology;
  std::string port_file;
  double heartbeat_timeout_s = 15;
  int64_t max_attempts = 3;
  std::string auth = "on";
  std::string operator_token_file;  // default: <db>.operator-token
  std::string tls_cert, tls_key, tls_client_ca;
  double rate_limit_rps = 100, rate_limit_burst = 200;
  int threads = 0;
  int64_t platform_fee_bps = 500;
};

// Makes sure an operator can get in: keeps the token in `path` if it is
// still valid, else issues one and writes it there (mode 0600).
Status EnsureOperatorToken(Authenticator& auth, const std::string& path) {
  if (auto text = ReadFile(path); text.ok()) {
    auto p = auth.Verify("Bearer " + Trimmed(*text));
    if (p.ok() && p->role == Role::kOperator) return Status::Ok();
  }
  auto issued = auth.Issue(Role::kOperator, "", "root", 0);
  if (!issued.ok()) return issued.status();
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << issued->secret << "\n";
    if (!out.good()) return FailedPrecondition("cannot write " + tmp);
  }
  std::filesystem::permissions(
      tmp, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return FailedPrecondition("cannot write " + path + ": " + ec.message());
  spdlog::info("issued an operator token ({}) into {}", issued->record.id, path);
  return Status::Ok();
}

int RunServer(const ServerOptions& o) {
  auto catalog = Catalog::LoadDefault();
  if (!catalog.ok()) return Fail(catalog.status());
  auto network = o.topology.empty() ? Topology::LoadDefault(*catalog)
                                    : Topology::LoadFile(o.topology, *catalog);
  if (!network.ok()) return Fail(network.status());
  auto store = SqliteStore::Open(o.db);
  if (!store.ok()) return Fail(store.status());
  SystemClock clock;
  auto last_id = (*store)->LastJobId();
  if (!last_id.ok()) return Fail(last_id.status());
  JobIdSequence ids(JobIdNumber(*last_id).value_or(0));
  auto new_id = [&] { return ids.Next(clock.NowMs()); };
  PlatformOptions popts;
  popts.heartbeat_timeout_ms = static_cast<int64_t>(o.heartbeat_timeout_s * 1000);
  popts.max_attempts = o.max_attempts;
  popts.platform_fee_bps = o.platform_fee_bps;
  Platform platform(**store, clock, *catalog, *network, new_id, popts);
  if (o.auth != "on" && o.auth != "off") {
    return Fail(InvalidArgument("--auth: expected on or off, got '" + o.auth + "'"));
  }
  Authenticator auth(**store, clock, RateLimit{o.rate_limit_rps, o.rate_limit_burst});
  const std::string token_file =
      o.operator_token_file.empty() ? o.db + ".operator-token" : o.operator_token_file;
  if (o.auth == "on") {
    Status loaded = auth.Load();
    if (!loaded.ok()) return Fail(loaded);
    Status ensured = EnsureOperatorToken(auth, token_file);
    if (!ensured.ok()) return Fail(ensured);
  }
  Api api(platform, o.auth == "on" ? &auth : nullptr);
  if (!o.tls_client_ca.empty()) api.set_require_site_certificates(true);
  net::HttpServerOptions hopts;
  hopts.tls_cert_file = o.tls_cert;
  hopts.tls_key_file = o.tls_key;
  hopts.tls_client_ca_file = o.tls_client_ca;
  if (!o.tls_client_ca.empty() && o.tls_cert.empty()) {
    return Fail(InvalidArgument("--tls-client-ca needs --tls-cert and --tls-key"));
  }
  hopts.address = o.listen;
  hopts.threads = o.threads;
  hopts.port = static_cast<uint16_t>(o.port);
  net::HttpServer server(hopts, [&api](const net::HttpRequest& r) { return api.Handle(r); });
  auto port = server.Start();
  if (!port.ok()) return Fail(port.status());
  if (!o.port_file.empty()) {
    std::string tmp = o.port_file + ".tmp";
    std::ofstream(tmp) << *port << "\n";
    std::filesystem::rename(tmp, o.port_file);
  }
  const bool tls = !o.tls_cert.empty();
  spdlog::info("cpn server listening on {}://{}:{} (database {}){}", tls ? "https" : "http",
               o.listen, *port, o.db,
               o.tls_client_ca.empty() ? "" : "; agents need their site's client certificate");
  if (o.auth == "on") {
    spdlog::info("tokens required; operator token in {} (CPN_TOKEN_FILE={} cpn ...)", token_file,
                 token_file);
  } else {
    spdlog::warn("--auth off: every caller acts as an operator");
  }
  if (!tls && o.listen != "127.0.0.1" && o.listen != "::1") {
    spdlog::warn(
        "serving plain HTTP on {}: tokens and data cross the network in clear; give it "
        "--tls-cert and --tls-key",
        o.listen);
  }
  while (!g_stop) {
    Status s = platform.Tick();
    if (!s.ok()) spdlog::error("scheduling round: {}", s.ToString());
    for (int i = 0; i < 5 && !g_stop; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  spdlog::info("cpn server stopping");
  server.Stop();
  return 0;
}

// ---- agent ----------------------------------------------------------------

int RunAgent(const std::string& config_path, const std::string& server_flag,
             const std::string& executor_flag) {
  auto catalog = Catalog::LoadDefault();
  if (!catalog.ok()) return Fail(catalog.status());
  auto config = LoadAgentConfig(config_path, *catalog);
  if (!config.ok()) return Fail(config.status());
  std::string server = !server_flag.empty()          ? server_flag
                       : !config->server_url.empty() ? config->server_url
                                                     : DefaultServer();
  auto client = net::HttpClient::Create(server);
  if (!client.ok()) return Fail(client.status());
  client->set_tls({config->server_tls_ca, config->tls_cert, config->tls_key});
  if (!config->token_file.empty()) {
    auto token = ReadFile(config->token_file);
    if (!token.ok()) return Fail(token.status().WithContext("token_file"));
    client->set_bearer_token(Trimmed(*token));
  }
  SystemClock clock;
  if (!executor_flag.empty()) config->executor = executor_flag;
  std::unique_ptr<Executor> executor;
  SystemCommandRunner runner;
  if (config->executor == "slurm") {
    auto slurm = std::make_unique<SlurmExecutor>(runner, config->partition_by_pool);
    // The pools' sizes are Slurm's: the GPUs of each partition's nodes.
    for (Pool& p : config->site.pools) {
      auto it = config->partition_by_pool.find(p.id);
      if (it == config->partition_by_pool.end()) {
        return Fail(InvalidArgument(p.id + ": with executor slurm every pool needs a partition"));
      }
      auto part = slurm->Partition(it->second);
      if (!part.ok()) return Fail(part.status());
      if (part->gpus == 0) {
        return Fail(FailedPrecondition("Slurm partition " + it->second + " has no GPUs (gres)"));
      }
      spdlog::info("pool {}: Slurm partition {} with {} nodes, {} GPUs ({} free)", p.id, it->second,
                   part->nodes, part->gpus, part->free_gpus);
      p.cards = part->gpus;
    }
    executor = std::move(slurm);
  } else {
    executor = std::make_unique<LocalExecutor>(clock);
  }
  spdlog::info("cpn agent for {} ({} pools, {} executor) -> {}", config->site.id,
               config->site.pools.size(), config->executor, server);
  Agent agent(*config, *catalog, *executor, clock, *client);
  std::unique_ptr<transfer::TransferServer> receiver;
  if (!config->data_root.empty()) {
    receiver = std::make_unique<transfer::TransferServer>(
        config->data_root, config->transfer_listen, static_cast<int>(config->transfer_port),
        transfer::TlsServerConfig{config->transfer_tls_cert, config->transfer_tls_key,
                                  config->transfer_tls_ca});
    auto port = receiver->Start();
    if (!port.ok()) return Fail(port.status().WithContext("transfer service"));
    std::string advertised = config->transfer_listen;
    if (advertised == "0.0.0.0") {
      char host[256] = {};
      ::gethostname(host, sizeof host - 1);
      advertised = host;
    }
    agent.SetTransferEndpoint(advertised, *port, !config->transfer_tls_cert.empty());
    spdlog::info("transfer service: receiving into {} on {}:{}", config->data_root,
                 config->transfer_listen, *port);
  }
  agent.Run(g_stop);
  spdlog::info("cpn agent stopping with {} job(s) unfinished", agent.active_jobs());
  return 0;
}

// One side of `cpn transfer`: a local path, or a path at a site's transfer
// service (SITE_ID:PATH, found through the platform, or HOST:PORT:PATH).
struct TransferPlace {
  bool remote = false;
  transfer::Endpoint endpoint;
  std::string path;
};

Result<TransferPlace> ParseTransferPlace(const std::string& spec, const std::string& server) {
  TransferPlace place;
  if (spec.rfind("cpn:", 0) == 0) {
    size_t colon = spec.find(':', 4);
    if (colon == std::string::npos) {
      return InvalidArgument("'" + spec + "': expected SITE_ID:PATH");
    }
    const std::string site = spec.substr(0, colon);
    place.remote = true;
    place.path = spec.substr(colon + 1);
    auto client = ClientFor(server);
    if (!client.ok()) return client.status();
    auto r = client->Send("GET", "/v1/sites/" + site.substr(4));
    if (!r.ok()) return r.status();
    Json body = Json::parse(r->body, nullptr, false);
    const Json* endpoint = nullptr;
    if (r->status == 200 && body.is_object() && body.contains("telemetry") &&
        body["telemetry"].is_object() && body["telemetry"].contains("transfer")) {
      endpoint = &body["telemetry"]["transfer"];
    }
    if (endpoint == nullptr || !endpoint->is_object()) {
      return FailedPrecondition(
          r->status == 200
              ? "site " + site + " has no transfer service (its agent config needs data_root)"
              : "site " + site + ": " + r->body);
    }
    place.endpoint.host = endpoint->value("address", "");
    place.endpoint.port = endpoint->value("port", 0);
    place.endpoint.tls = endpoint->value("tls", false);
    return place;
  }
  // HOST:PORT:PATH, where HOST has no '/' (so ./a:1:b stays a local path).
  size_t c1 = spec.find(':');
  size_t c2 = c1 == std::string::npos ? c1 : spec.find(':', c1 + 1);
  if (c2 == std::string::npos || c1 == 0 || spec.substr(0, c1).find('/') != std::string::npos) {
    place.path = spec;  // local
    return place;
  }
  const std::string port = spec.substr(c1 + 1, c2 - c1 - 1);
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos) {
    place.path = spec;  // local, with colons in its name
    return place;
  }
  place.remote = true;
  place.endpoint.host = spec.substr(0, c1);
  place.endpoint.port = std::stoi(port);
  if (place.endpoint.port <= 0 || place.endpoint.port > 65535) {
    return InvalidArgument("'" + spec + "': port " + port + " is out of range");
  }
  place.path = spec.substr(c2 + 1);
  return place;
}

}  // namespace

std::string RenderDecision(const Json& d) {
  std::string out = fmt::format("{}\n", d.value("summary", ""));
  const Json& options = d["options"];
  if (!options.empty()) {
    Table t({"#", "POOL", "CARDS", "RUN", "STAGING", "COST", "ENERGY", "CO2"});
    int rank = 0;
    for (const auto& o : options) {
      if (++rank > 10) break;
      t.Add({std::to_string(rank), o["pool"], std::to_string(o["cards"].get<int64_t>()),
             Hours(o["run_h"]), Hours(o["transfer_h"]), Cny(o["total_cny"]),
             Number(o["energy_kwh"]) + " kWh", Number(o["carbon_kg"]) + " kg"});
    }
    out += "\n" + t.Render();
    if (options.size() > 10) out += fmt::format("... and {} more\n", options.size() - 10);
  }
  const Json& rejected = d["rejected"];
  if (!rejected.empty()) {
    out += fmt::format("\nRejected ({}):\n", rejected.size());
    int shown = 0;
    for (const auto& r : rejected) {
      if (++shown > 12) {
        out += fmt::format("  ... and {} more (--json lists all)\n", rejected.size() - 12);
        break;
      }
      out += fmt::format("  {}  {}: {}\n", r["pool"].get<std::string>(),
                         r["reason"].get<std::string>(), r["detail"].get<std::string>());
    }
  }
  if (d.contains("home") && d["home"].is_object()) {
    const Json& h = d["home"];
    out += fmt::format("\nAt home ({}): {} in {}", h["pool"].get<std::string>(),
                       Cny(h["total_cny"]), Hours(h["completion_h"]));
    if (!options.empty()) {
      double saving = h["total_cny"].get<double>() - options[0]["total_cny"].get<double>();
      out += fmt::format("; the chosen option saves {}", Cny(saving));
    }
    out += "\n";
  } else if (d.contains("home_note")) {
    out += "\nAt home: " + d.value("home_note", "") + "\n";
  }
  if (d.contains("ownership")) {
    const Json& w = d["ownership"];
    out += fmt::format("Buying it instead: {} x {}-card {} server(s) {} + energy {} = {}\n",
                       w["servers"].get<int64_t>(), w["cards_per_server"].get<int64_t>(),
                       w["accelerator"].get<std::string>(), Cny(w["capex_cny"]),
                       Cny(w["energy_cny"]), Cny(w["total_cny"]));
  }
  return out;
}

std::string RenderJob(const Json& j, const Json& events) {
  std::string out;
  out += fmt::format("Job      {}  ({}, tenant {})\n", j["id"].get<std::string>(),
                     j["name"].get<std::string>(), j["tenant"].get<std::string>());
  out += fmt::format("State    {}{}\n", j["state"].get<std::string>(),
                     j["exit_code"].is_null()
                         ? ""
                         : fmt::format(" (exit code {})", j["exit_code"].get<int64_t>()));
  out += fmt::format("Site     {}\nPool     {}\n", OrDash(j["site"]), OrDash(j["pool"]));
  const Json& why = j["decision"];
  if (why.is_object() && why.contains("summary")) {
    out += fmt::format("Why      {}\n", why["summary"].get<std::string>());
  }
  out += fmt::format("Latest   {}\n", OrDash(j["reason"]));
  const Json& o = j["order"];
  if (o.is_object() && !o.empty()) {
    out += fmt::format(
        "Ordered  {} x {} at {}/card-h: est. run {}, staging {}, cost {}, energy {} kWh, "
        "CO2 {} kg\n",
        o["cards"].get<int64_t>(), o["accelerator"].get<std::string>(),
        Cny(o["price_cny_per_card_hour"]), Hours(o["run_h"]), Hours(o["transfer_h"]),
        Cny(o["total_cny"]), Number(o["energy_kwh"]), Number(o["carbon_kg"]));
  }
  if (j.contains("metered")) {
    const Json& m = j["metered"];
    out += fmt::format("Metered  {} card-h, {}{}\n", Number(m["card_hours"], 4),
                       Cny(m["total_cny"]), m["final"].get<bool>() ? "" : " so far");
  }
  const Json& dec = j["decision"];
  if (dec.is_object() && dec.contains("options") && dec["options"].size() > 1) {
    const Json& r = dec["options"][1];
    out += fmt::format("Runner-up {}: {}, {} run + {} staging, {} kg CO2\n",
                       r["pool"].get<std::string>(), Cny(r["total_cny"]), Hours(r["run_h"]),
                       Hours(r["transfer_h"]), Number(r["carbon_kg"]));
  }
  if (events.is_array() && !events.empty()) {
    out += "\nEvents:\n";
    for (const auto& e : events) {
      out += fmt::format("  {}  {:<10} {}\n", TimeOfMs(e["time_ms"]), e["state"].get<std::string>(),
                         e["reason"].get<std::string>());
    }
  }
  return out;
}

void InstallStopHandlers() {
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

int Main(int argc, char** argv) {
  CLI::App app{
      "cpn: a computing power network. Registers sites and their accelerators, senses them, "
      "and schedules AI jobs across them by cost, time, energy, carbon and data rules."};
  app.require_subcommand(1);
  app.set_version_flag("--version", "cpn 0.1.0");
  std::string server = DefaultServer();
  bool as_json = false;
  auto client_cmd = [&](const std::string& name, const std::string& help) {
    CLI::App* c = app.add_subcommand(name, help);
    c->add_option("--server", server, "cpn server address (env CPN_SERVER)")->capture_default_str();
    c->add_option("--token-file", g_token_file,
                  "file holding your API token (default: $CPN_TOKEN, or the file named by "
                  "$CPN_TOKEN_FILE)");
    c->add_flag("--json", as_json, "print the server's JSON instead of a table");
    return c;
  };
  int rc = 0;
  // Calls the server; on error prints it and sets the exit code, with --json
  // prints the reply. Either way the caller only renders a table if it gets one.
  auto Fetch = [&](const std::string& method, const std::string& target,
                   const std::string& body = "",
                   const std::map<std::string, std::string>& headers = {}) -> std::optional<Json> {
    auto r = Call(server, method, target, body, headers);
    if (!r.ok()) {
      rc = Fail(r.status());
      return std::nullopt;
    }
    if (as_json) {
      std::cout << r->dump(2) << "\n";
      return std::nullopt;
    }
    return std::move(r).value();
  };

  // server
  ServerOptions so;
  CLI::App* server_cmd =
      app.add_subcommand("server", "run the platform server (REST API under /v1)");
  server_cmd->add_option("--listen", so.listen, "address to listen on")->capture_default_str();
  server_cmd->add_option("--port", so.port, "port; 0 picks a free one")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  server_cmd->add_option("--db", so.db, "SQLite database file")->capture_default_str();
  server_cmd->add_option("--topology", so.topology,
                         "topology file with the links between areas "
                         "(default: data/topology/china.json)");
  server_cmd->add_option("--port-file", so.port_file, "write the bound port to this file");
  server_cmd
      ->add_option("--heartbeat-timeout-s", so.heartbeat_timeout_s,
                   "a site's lease: after this long without a heartbeat it is marked down "
                   "and its jobs are placed again elsewhere")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 86400.0));
  server_cmd
      ->add_option("--max-attempts", so.max_attempts,
                   "times a job is placed again after its site loses its lease, before it "
                   "fails (default 3)")
      ->check(CLI::Range(int64_t{1}, int64_t{100}));
  server_cmd
      ->add_option("--auth", so.auth,
                   "on: every request needs a token (docs/security.md); off: every caller "
                   "acts as an operator (tests, one-user setups)")
      ->capture_default_str();
  server_cmd
      ->add_option("--threads", so.threads,
                   "HTTP threads, each with its own connections; agents' reports block theirs "
                   "while their write reaches the disk (default 0: six per core, at least eight)")
      ->check(CLI::Range(0, 1024));
  server_cmd->add_option("--tls-cert", so.tls_cert,
                         "serve HTTPS with this certificate chain (PEM)");
  server_cmd->add_option("--tls-key", so.tls_key, "the private key (PEM) of --tls-cert");
  server_cmd->add_option("--tls-client-ca", so.tls_client_ca,
                         "mutual TLS for agents: site tokens are accepted only with a client "
                         "certificate from this CA whose CN is the site id");
  server_cmd->add_option(
      "--operator-token-file", so.operator_token_file,
      "where the first operator token is written (default: <db>.operator-token)");
  server_cmd
      ->add_option("--rate-limit-rps", so.rate_limit_rps,
                   "requests per second each tenant or provider token may make "
                   "(0: unlimited)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e6));
  server_cmd
      ->add_option("--rate-limit-burst", so.rate_limit_burst,
                   "requests a token may make at once before the rate applies")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 1e7));
  server_cmd
      ->add_option("--platform-fee-bps", so.platform_fee_bps,
                   "the platform's fee on every charge, in basis points (500 = 5%)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{10000}));
  server_cmd->callback([&] { rc = RunServer(so); });

  // agent
  std::string agent_config, agent_server;
  CLI::App* agent_cmd =
      app.add_subcommand("agent", "run a site agent in front of local machines or a Slurm cluster");
  agent_cmd->add_option("--config", agent_config, "site configuration file (TOML)")->required();
  agent_cmd->add_option("--server", agent_server, "server address (overrides the config)");
  std::string agent_executor;
  agent_cmd
      ->add_option("--executor", agent_executor,
                   "local (processes here) or slurm (batch jobs; overrides the config)")
      ->check(CLI::IsMember({"local", "slurm"}));
  agent_cmd->callback([&] { rc = RunAgent(agent_config, agent_server, agent_executor); });

  // dev
  DevOptions dev;
  CLI::App* dev_cmd = app.add_subcommand(
      "dev", "run a whole local network: server, one agent per sample site, sample jobs");
  dev_cmd->add_flag("--demo", dev.demo, "submit the sample jobs, print the report, shut down");
  dev_cmd->add_option("--dir", dev.dir, "run directory (default: a new temporary one)");
  dev_cmd->add_option("--port", dev.port,
                      "server port (default: 8080 for plain dev, any free "
                      "port with --demo)");
  dev_cmd->add_option("--topology", dev.topology, "topology file (default: the shipped sample)");
  dev_cmd->callback([&] { rc = RunDev(dev); });

  // sim
  std::string sim_topology, sim_workload, sim_out;
  std::vector<std::string> sim_policies;
  int64_t sim_jobs = 2000;
  double sim_rate = 20;
  uint64_t sim_seed = 1;
  double sim_training = 0.6;
  double sim_round_s = 0;
  std::vector<std::string> sim_outages;
  CLI::App* sim_cmd = app.add_subcommand(
      "sim", "simulate the network on virtual time with the real scheduler (trace-driven)");
  sim_cmd->require_subcommand(0, 1);
  sim_cmd->add_option("--topology", sim_topology, "topology file (default: the shipped one)");
  sim_cmd->add_option("--workload", sim_workload,
                      "workload CSV (docs/workload-format.md); without it a synthetic one");
  sim_cmd->add_option("--policy", sim_policies,
                      "cheapest, fastest, greenest, balanced, or a baseline: local, round-robin, "
                      "greedy-cheapest; repeat to compare (default: local and the four)");
  sim_cmd->add_option("--jobs", sim_jobs, "synthetic workload: number of jobs")
      ->check(CLI::Range(int64_t{1}, int64_t{10'000'000}));
  sim_cmd->add_option("--rate", sim_rate, "synthetic workload: arrivals per hour")
      ->check(CLI::Range(0.001, 1e7));
  sim_cmd->add_option("--seed", sim_seed, "synthetic workload seed");
  sim_cmd
      ->add_option("--training-share", sim_training, "synthetic workload: share of training jobs")
      ->check(CLI::Range(0.0, 1.0));
  sim_cmd->add_option("--out", sim_out,
                      "write report.txt, report.json, workload.csv and SVG charts here");
  sim_cmd->add_option("--outage", sim_outages,
                      "take a site out of service: SITE_ID,START_H,HOURS (repeatable)");
  sim_cmd
      ->add_option("--round-s", sim_round_s,
                   "seconds of virtual time between scheduling rounds (default 0: a round at "
                   "every event)")
      ->check(CLI::Range(0.0, 86400.0));

  // transfer: serve a data root, or push a file or tree to one.
  std::string xfer_root, xfer_listen = "127.0.0.1", xfer_src, xfer_dst, xfer_port_file, xfer_server,
                         xfer_tls_cert, xfer_tls_key, xfer_tls_ca;
  bool xfer_tls = false;
  int xfer_port = 7070, xfer_streams = 0;
  std::string xfer_congestion = "bbr";
  bool xfer_compress = false, xfer_json = false;
  double xfer_rate = 0;
  uint64_t xfer_chunk_mib = 4;
  CLI::App* xfer_cmd = app.add_subcommand(
      "transfer",
      "copy a file or directory to, from or between sites' transfer services: every chunk "
      "verified, resumable by running it again");
  xfer_cmd->add_option("SRC", xfer_src,
                       "local file or directory, or SITE_ID:PATH or HOST:PORT:PATH at a site");
  xfer_cmd->add_option("DST", xfer_dst,
                       "SITE_ID:PATH or HOST:PORT:PATH at a site (PATH relative to its data "
                       "root), or a local directory to pull into; site to site, the data goes "
                       "straight from SRC's agent to DST's");
  xfer_cmd->add_option("--server", xfer_server, "platform server, to find SITE_ID's agent");
  xfer_cmd
      ->add_option("--streams", xfer_streams,
                   "parallel TCP connections (default: chosen from the measured round trip)")
      ->check(CLI::Range(0, 64));
  xfer_cmd->add_option("--congestion", xfer_congestion,
                       "TCP congestion control of the data connections (default bbr; "
                       "'system' keeps the kernel's default)");
  xfer_cmd->add_flag("--compress", xfer_compress, "zstd-compress chunks where it helps");
  xfer_cmd->add_flag("--json", xfer_json, "also print the figures as one line of JSON");
  xfer_cmd->add_flag("--tls", xfer_tls,
                     "TLS on every connection (on by itself for a site that advertises it)");
  xfer_cmd->add_option("--tls-ca", xfer_tls_ca,
                       "CA certificates (PEM) to check the receiver's certificate against "
                       "(default: the system's)");
  xfer_cmd->add_option("--rate-limit-mbps", xfer_rate, "cap the sending rate (Mbit/s)")
      ->check(CLI::Range(0.0, 1e6));
  xfer_cmd->add_option("--chunk-mib", xfer_chunk_mib, "chunk size in MiB")
      ->check(CLI::Range(uint64_t{1}, uint64_t{256}));
  CLI::App* xfer_serve = xfer_cmd->add_subcommand(
      "serve",
      "receive transfers into, and serve them from, a data root (what a site's agent runs)");
  xfer_serve->add_option("--root", xfer_root, "the data root")->required();
  xfer_serve->add_option("--listen", xfer_listen, "address to listen on");
  xfer_serve->add_option("--port", xfer_port, "port (0 picks one)")->check(CLI::Range(0, 65535));
  xfer_serve->add_option("--port-file", xfer_port_file, "write the bound port here");
  xfer_serve->add_option("--tls-cert", xfer_tls_cert, "certificate chain (PEM): require TLS");
  xfer_serve->add_option("--tls-key", xfer_tls_key, "private key (PEM) of --tls-cert");
  xfer_serve->add_option("--tls-ca", xfer_tls_ca,
                         "CA certificates (PEM) to check another service's certificate when "
                         "relaying to it (default: the system's)");
  xfer_serve->callback([&] {
    if (xfer_tls_cert.empty() != xfer_tls_key.empty()) {
      rc = Fail(InvalidArgument("--tls-cert and --tls-key go together"));
      return;
    }
    transfer::TransferServer server(xfer_root, xfer_listen, xfer_port,
                                    {xfer_tls_cert, xfer_tls_key, xfer_tls_ca});
    auto port = server.Start();
    if (!port.ok()) {
      rc = Fail(port.status());
      return;
    }
    std::cerr << "cpn transfer: receiving into " << xfer_root << " on " << xfer_listen << ":"
              << *port << "\n";
    if (!xfer_port_file.empty()) {
      std::string tmp = xfer_port_file + ".tmp";
      std::ofstream(tmp) << *port << "\n";
      std::filesystem::rename(tmp, xfer_port_file);
    }
    while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    server.Stop();
  });
  xfer_cmd->callback([&] {
    if (xfer_serve->parsed()) return;
    if (xfer_src.empty() || xfer_dst.empty()) {
      rc = Fail(InvalidArgument(
          "usage: cpn transfer SRC DST, each a local path, SITE_ID:PATH or HOST:PORT:PATH, "
          "at least one of them remote (or cpn transfer serve)"));
      return;
    }
    const std::string server = xfer_server.empty() ? DefaultServer() : xfer_server;
    auto src = ParseTransferPlace(xfer_src, server);
    if (!src.ok()) {
      rc = Fail(src.status().WithContext("SRC"));
      return;
    }
    auto dst = ParseTransferPlace(xfer_dst, server);
    if (!dst.ok()) {
      rc = Fail(dst.status().WithContext("DST"));
      return;
    }
    if (!src->remote && !dst->remote) {
      rc =
          Fail(InvalidArgument("SRC and DST are both local paths: one of them must be a site "
                               "(SITE_ID:PATH or HOST:PORT:PATH); use cp for local copies"));
      return;
    }
    transfer::TransferOptions o;
    o.streams = xfer_streams;
    o.congestion = xfer_congestion == "system" ? "" : xfer_congestion;
    o.compress = xfer_compress;
    o.rate_limit_mbps = xfer_rate;
    o.tls_ca_file = xfer_tls_ca;
    o.chunk_bytes = xfer_chunk_mib << 20;
    const bool force_tls = xfer_tls || !xfer_tls_ca.empty();
    const auto t0 = std::chrono::steady_clock::now();
    if (isatty(2)) {
      o.progress = [t0](uint64_t sent, uint64_t total) {
        double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        double rate = s > 0 ? static_cast<double>(sent) / s : 0;
        double frac = total ? static_cast<double>(sent) / static_cast<double>(total) : 1;
        int filled = static_cast<int>(frac * 30);
        std::cerr << fmt::format("\r[{}{}] {:3.0f}% {:.1f} MB/s ETA {:.0f} s ",
                                 std::string(filled, '#'), std::string(30 - filled, '.'),
                                 frac * 100, rate / 1e6,
                                 rate > 0 ? static_cast<double>(total - sent) / rate : 0.0)
                  << std::flush;
      };
    }
    Result<transfer::TransferStats> stats = Internal("no transfer");
    std::string verb = "sent";
    if (!src->remote) {
      o.tls = force_tls || dst->endpoint.tls;
      stats = transfer::Push(dst->endpoint.host, dst->endpoint.port, xfer_src, dst->path, o);
    } else if (!dst->remote) {
      o.tls = force_tls || src->endpoint.tls;
      verb = "received";
      stats = transfer::Pull(src->endpoint.host, src->endpoint.port, src->path, xfer_dst, o);
    } else {
      o.tls = force_tls || src->endpoint.tls;
      transfer::Endpoint to = dst->endpoint;
      to.tls = to.tls || force_tls;
      verb = "relayed";
      stats = transfer::Relay(src->endpoint, src->path, to, dst->path, o);
    }
    if (o.progress) std::cerr << "\n";
    if (!stats.ok()) {
      rc = Fail(stats.status());
      return;
    }
    std::cout << fmt::format(
        "{} file(s), {:.1f} MB in {:.2f} s; {} {:.1f} MB ({:.1f} MB on the wire) in {:.2f} s "
        "= {:.0f} Mbit/s over {} {} stream(s), RTT {:.2f} ms; {} chunk(s) already there, {} "
        "sent again after a failed check\n",
        stats->files, static_cast<double>(stats->bytes_total) / 1e6, stats->seconds, verb,
        static_cast<double>(stats->bytes_sent) / 1e6,
        static_cast<double>(stats->bytes_on_wire) / 1e6, stats->data_seconds,
        stats->data_seconds > 0
            ? static_cast<double>(stats->bytes_sent) * 8 / 1e6 / stats->data_seconds
            : 0.0,
        stats->streams, stats->congestion.empty() ? "TCP" : stats->congestion, stats->rtt_ms,
        stats->chunks_skipped, stats->chunks_resent);
    if (xfer_json) std::cout << stats->ToJson() << "\n";
  });

  // sim convert
  std::string conv_format, conv_in, conv_out, conv_nodes, conv_residency = "anywhere";
  std::vector<std::string> conv_sites;
  sim::ConvertOptions conv;
  CLI::App* convert_cmd = sim_cmd->add_subcommand(
      "convert", "convert a public trace to cpn's workload CSV (docs/workload-format.md)");
  convert_cmd
      ->add_option("--format", conv_format,
                   "alibaba-gpu-v2023 (openb pod list) or azure-llm-inference-2023")
      ->required()
      ->check(CLI::IsMember({"alibaba-gpu-v2023", "azure-llm-inference-2023"}));
  convert_cmd->add_option("--in", conv_in, "the trace file")->required();
  convert_cmd->add_option("--out", conv_out, "workload CSV to write (default: standard output)");
  convert_cmd->add_option("--nodes", conv_nodes,
                          "alibaba: openb_node_list_gpu_node.csv, for the cluster's mean card");
  convert_cmd->add_option("--data-sites", conv_sites,
                          "site ids the jobs' data live at, dealt in turn (default: bj-01, "
                          "sh-01, sz-01)");
  convert_cmd->add_option("--dataset-gb", conv.dataset_gb, "dataset size per job")
      ->check(CLI::Range(0.0, 1e7));
  convert_cmd->add_option("--residency", conv_residency, "anywhere, country, province or site");
  convert_cmd
      ->add_option("--model-params-b", conv.model_params_b,
                   "azure: billions of parameters of the served model (default 70)")
      ->check(CLI::Range(0.001, 1e5));
  convert_cmd->add_option("--cards", conv.cards, "azure: cards per request (default 1)")
      ->check(CLI::Range(int64_t{1}, kMaxCardsPerJob));
  convert_cmd->callback([&] {
    if (!conv_sites.empty()) conv.data_sites = conv_sites;
    for (const auto& site : conv.data_sites) {
      Status st = ValidateSiteId(site, "--data-sites");
      if (!st.ok()) {
        rc = Fail(st);
        return;
      }
    }
    auto residency = ParseResidency(conv_residency);
    if (!residency.ok()) {
      rc = Fail(residency.status().WithContext("--residency"));
      return;
    }
    conv.residency = *residency;
    auto text = ReadFile(conv_in);
    if (!text.ok()) {
      rc = Fail(text.status());
      return;
    }
    sim::ConvertSummary summary;
    Result<std::vector<sim::WorkloadJob>> jobs = InvalidArgument("unknown format");
    if (conv_format == "alibaba-gpu-v2023") {
      std::string nodes;
      if (!conv_nodes.empty()) {
        auto n = ReadFile(conv_nodes);
        if (!n.ok()) {
          rc = Fail(n.status());
          return;
        }
        nodes = *n;
      }
      jobs = sim::ConvertAlibabaGpuPods(*text, conv_in, nodes, conv_nodes, conv, &summary);
    } else {
      jobs = sim::ConvertAzureLlmInference(*text, conv_in, conv, &summary);
    }
    if (!jobs.ok()) {
      rc = Fail(jobs.status());
      return;
    }
    std::string csv = sim::WorkloadToCsv(*jobs);
    if (conv_out.empty()) {
      std::cout << csv;
    } else {
      std::ofstream out(conv_out);
      out << csv;
      if (!out.good()) {
        rc = Fail(Unavailable("cannot write " + conv_out));
        return;
      }
    }
    std::cerr << fmt::format("{} rows read, {} jobs written\n", summary.rows, summary.jobs);
    for (const auto& note : summary.notes) std::cerr << "  " << note << "\n";
  });

  sim_cmd->callback([&] {
    if (convert_cmd->parsed()) return;
    auto catalog = Catalog::LoadDefault();
    if (!catalog.ok()) {
      rc = Fail(catalog.status());
      return;
    }
    auto topo = sim_topology.empty() ? Topology::LoadDefault(*catalog)
                                     : Topology::LoadFile(sim_topology, *catalog);
    if (!topo.ok()) {
      rc = Fail(topo.status());
      return;
    }
    std::vector<sim::WorkloadJob> jobs;
    if (!sim_workload.empty()) {
      auto w = sim::LoadWorkloadCsv(sim_workload, *catalog);
      if (!w.ok()) {
        rc = Fail(w.status());
        return;
      }
      jobs = std::move(w).value();
    } else {
      sim::SyntheticOptions so;
      so.jobs = sim_jobs;
      so.arrivals_per_hour = sim_rate;
      so.seed = sim_seed;
      so.training_share = sim_training;
      so.tenants = {"bj-health", "sh-finance", "sz-robotics"};
      for (const char* s :
           {"cpn:cn.bj/bj-cloud/bj-01", "cpn:cn.sh/sh-cloud/sh-01", "cpn:cn.gd/sz-cloud/sz-01"}) {
        if (topo->FindSite(s)) so.data_sites.push_back(s);
      }
      if (so.data_sites.empty()) so.data_sites.push_back(topo->sites().front().id);
      jobs = sim::SyntheticWorkload(so);
    }
    if (sim_policies.empty()) {
      sim_policies = {"local", "cheapest", "fastest", "greenest", "balanced"};
    }
    std::vector<sim::SimOptions> runs;
    for (const auto& name : sim_policies) {
      auto p = sim::ParseSimPolicy(name);
      if (!p.ok()) {
        rc = Fail(p.status().WithContext("--policy"));
        return;
      }
      sim::SimOptions opt;
      opt.policy = p->first;
      opt.baseline = p->second;
      opt.round_s = sim_round_s;
      for (const auto& text : sim_outages) {
        auto o = sim::ParseOutage(text, *topo);
        if (!o.ok()) {
          rc = Fail(o.status());
          return;
        }
        opt.outages.push_back(*o);
      }
      runs.push_back(opt);
    }
    std::string text, json = "[";
    std::vector<sim::SimReport> reports;
    for (size_t i = 0; i < runs.size(); ++i) {
      const std::string label = sim_policies[i];
      std::cerr << "simulating " << label << " (" << jobs.size() << " jobs)\n";
      if (isatty(2)) {
        runs[i].progress = [&label](double done) {
          int filled = static_cast<int>(done * 30);
          std::cerr << "\r  " << label << " [" << std::string(filled, '#')
                    << std::string(30 - filled, '.') << "] " << static_cast<int>(done * 100) << "%"
                    << std::flush;
        };
      }
      reports.push_back(sim::Simulate(*catalog, *topo, jobs, runs[i]));
      if (runs[i].progress) std::cerr << "\r" << std::string(50, ' ') << "\r";
      text += reports.back().ToText();
      json += (i ? "," : "") + reports.back().ToJson();
    }
    json += "]";
    std::cout << text;
    if (!sim_out.empty()) {
      std::error_code ec;
      std::filesystem::create_directories(sim_out, ec);
      std::vector<std::pair<std::string, std::string>> files = {
          {"report.txt", text},
          {"report.json", json + "\n"},
          {"workload.csv", sim::WorkloadToCsv(jobs)},
          {"cost_vs_completion.svg", sim::CostVsCompletionSvg(reports)},
          {"utilisation.svg", sim::UtilisationSvg(reports)}};
      for (const auto& r : reports) {
        files.push_back(
            {"utilisation_over_time_" + r.policy + ".svg", sim::UtilisationOverTimeSvg(r)});
      }
      for (const auto& [name, body] : files) {
        std::ofstream out(sim_out + "/" + name);
        out << body;
        if (!out.good()) {
          rc = Fail(Unavailable("cannot write " + sim_out + "/" + name));
          return;
        }
      }
    }
  });

  // catalog (offline)
  CLI::App* catalog_cmd =
      app.add_subcommand("catalog", "list the accelerator catalog, with sources");
  catalog_cmd->add_flag("--json", as_json, "print JSON");
  std::string catalog_id;
  catalog_cmd->add_option("ID", catalog_id, "show one model with the source of every figure");
  catalog_cmd->callback([&] {
    auto c = Catalog::LoadDefault();
    if (!c.ok()) {
      rc = Fail(c.status());
      return;
    }
    if (!catalog_id.empty()) {
      const AcceleratorModel* m = c->Find(catalog_id);
      if (m == nullptr) {
        rc = Fail(NotFound("no accelerator '" + catalog_id + "' in the catalog"));
        return;
      }
      if (as_json) {
        std::cout << AcceleratorToJson(*m).dump(2) << "\n";
        return;
      }
      auto fig = [&](const char* name, const std::optional<double>& v, const char* unit) {
        std::cout << fmt::format("  {:<22} {:>10}  {}\n", name,
                                 v ? Number(*v, 1) + " " + unit : std::string("n/a"),
                                 v ? m->SourceOf(name) : "not published");
      };
      std::cout << fmt::format("{} {} ({}, {}, {} market)\n", m->vendor, m->name, m->id, m->kind,
                               m->market);
      fig("fp64_tflops", m->fp64_tflops, "TFLOPS");
      fig("fp32_tflops", m->fp32_tflops, "TFLOPS");
      fig("fp16_tflops", m->fp16_tflops, "TFLOPS");
      fig("fp8_tflops", m->fp8_tflops, "TFLOPS");
      fig("int8_tops", m->int8_tops, "TOPS");
      fig("memory_gb", m->memory_gb, "GB");
      fig("memory_bandwidth_gbs", m->memory_bandwidth_gbs, "GB/s");
      fig("board_power_w", m->board_power_w, "W");
      fig("server_price_cny", m->server_price_cny, "CNY");
      std::cout << fmt::format("  FP16-equivalent capacity: {} TFLOPS (basis {})\n",
                               Number(m->fp16_equivalent_tflops()),
                               m->fp16_is_native() ? "fp16" : "fp32");
      std::string sw;
      for (const auto& s : m->software) sw += (sw.empty() ? "" : ", ") + s;
      std::cout << "  software: " << sw << "\n";
      return;
    }
    if (as_json) {
      std::cout << c->ToJson().dump(2) << "\n";
      return;
    }
    Table t({"ID", "VENDOR", "KIND", "FP16-EQ", "FP8", "INT8", "FP32", "FP64", "MEM", "BW", "POWER",
             "SOFTWARE"});
    auto num = [](const std::optional<double>& v) { return v ? Number(*v, 1) : "-"; };
    for (const auto& m : c->models()) {
      std::string sw;
      for (const auto& s : m.software) sw += (sw.empty() ? "" : ",") + s;
      t.Add({m.id, m.vendor, m.kind,
             Number(m.fp16_equivalent_tflops(), 1) + (m.fp16_is_native() ? "" : "*"),
             num(m.fp8_tflops), num(m.int8_tops), num(m.fp32_tflops), num(m.fp64_tflops),
             Number(m.memory_gb, 0) + " GB", Number(m.memory_bandwidth_gbs, 0) + " GB/s",
             Number(m.board_power_w, 0) + " W", sw});
    }
    std::cout << t.Render()
              << "\nTFLOPS dense, per card (per socket for CPUs). * = rated by FP32 (no FP16 "
                 "peak published).\n`cpn catalog ID` shows the source of every figure.\n";
  });

  // sites
  CLI::App* sites_cmd = client_cmd("sites", "list registered sites and their state");
  sites_cmd->callback([&] {
    auto r = Fetch("GET", "/v1/sites");
    if (!r) return;
    Table t({"SITE", "NAME", "AREA", "JURISDICTION", "STATE", "POOLS", "CARDS", "BUSY", "PUE",
             "GREEN"});
    for (const auto& s : (*r)["sites"]) {
      int64_t cards = 0, busy = 0;
      for (const auto& p : s["site"]["pools"]) cards += p["cards"].get<int64_t>();
      if (s["telemetry"].contains("pools")) {
        for (const auto& p : s["telemetry"]["pools"]) busy += p.value("busy_cards", int64_t{0});
      }
      t.Add({s["id"], s["site"]["name"], s["site"]["area"], s["site"]["jurisdiction"], s["state"],
             std::to_string(s["site"]["pools"].size()), std::to_string(cards), std::to_string(busy),
             Number(s["site"]["pue"], 2),
             Number(s["site"]["green_share"].get<double>() * 100, 0) + "%"});
    }
    std::cout << t.Render();
  });

  // token create | list | revoke
  CLI::App* token_cmd = app.add_subcommand("token", "issue, list and revoke API tokens");
  token_cmd->require_subcommand(1);
  std::string tok_role, tok_subject, tok_user, tok_id, tok_out;
  double tok_ttl_h = 0;
  auto token_sub = [&](const std::string& name, const std::string& help) {
    CLI::App* c = token_cmd->add_subcommand(name, help);
    c->add_option("--server", server, "cpn server address (env CPN_SERVER)")->capture_default_str();
    c->add_option("--token-file", g_token_file, "file holding your own API token");
    c->add_flag("--json", as_json, "print the server's JSON instead of a table");
    return c;
  };
  CLI::App* tok_create =
      token_sub("create",
                "issue a token (shown once): operators issue any; tenants for their users; "
                "providers for themselves and their sites");
  tok_create->add_option("--role", tok_role, "operator, provider, tenant or site")->required();
  tok_create->add_option("--subject", tok_subject,
                         "the provider id, tenant name or site id the token acts as");
  tok_create->add_option("--user", tok_user, "who holds it (a person or a service)");
  tok_create->add_option("--ttl-h", tok_ttl_h, "hours until it expires (0: never)")
      ->check(CLI::Range(0.0, 24.0 * 3650));
  tok_create->add_option("--out", tok_out,
                         "write the token to this file (mode 0600) instead of printing it");
  tok_create->callback([&] {
    Json body{
        {"role", tok_role}, {"subject", tok_subject}, {"user", tok_user}, {"ttl_h", tok_ttl_h}};
    const bool json = as_json;
    as_json = false;
    auto r = Fetch("POST", "/v1/tokens", body.dump());
    if (!r) return;
    const std::string secret = (*r)["token"];
    if (!tok_out.empty()) {
      {
        std::ofstream out(tok_out, std::ios::trunc);
        out << secret << "\n";
        if (!out.good()) {
          rc = Fail(FailedPrecondition("cannot write " + tok_out));
          return;
        }
      }
      std::filesystem::permissions(
          tok_out, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
      r->erase("token");
    }
    if (json) {
      std::cout << r->dump(2) << "\n";
      return;
    }
    std::cout << fmt::format("{}  {} {}{}\n", (*r)["id"].get<std::string>(), tok_role, tok_subject,
                             tok_user.empty() ? "" : "/" + tok_user);
    if (tok_out.empty()) {
      std::cout << secret << "\n(shown only now: the platform keeps only its hash)\n";
    } else {
      std::cout << "written to " << tok_out << "\n";
    }
  });
  CLI::App* tok_list = token_sub("list", "tokens you may see (never their secrets)");
  tok_list->callback([&] {
    auto r = Fetch("GET", "/v1/tokens");
    if (!r) return;
    Table t({"ID", "ROLE", "SUBJECT", "USER", "CREATED", "EXPIRES", "STATE"});
    for (const auto& k : (*r)["tokens"]) {
      auto when = [](const Json& ms) {
        return ms.is_number()
                   ? fmt::format("{:%Y-%m-%d %H:%M}",
                                 fmt::gmtime(static_cast<std::time_t>(ms.get<int64_t>() / 1000)))
                   : std::string("-");
      };
      t.Add({k["id"], k["role"], k["subject"].get<std::string>().empty() ? "-" : k["subject"],
             k["user"].get<std::string>().empty() ? "-" : k["user"], when(k["created_ms"]),
             when(k.value("expires_ms", Json())), k.contains("revoked_ms") ? "revoked" : "live"});
    }
    std::cout << t.Render();
  });
  CLI::App* tok_revoke = token_sub("revoke", "revoke a token at once");
  tok_revoke->add_option("ID", tok_id, "token id (tok-...)")->required();
  tok_revoke->callback([&] {
    auto r = Fetch("DELETE", "/v1/tokens/" + net::UrlEncode(tok_id));
    if (!r) return;
    std::cout << tok_id << "  revoked\n";
  });

  // quota get | set
  CLI::App* quota_cmd =
      app.add_subcommand("quota", "a tenant's limits: cards at once, CNY a month");
  quota_cmd->require_subcommand(1);
  std::string quota_tenant;
  std::vector<std::string> quota_cards;
  double quota_budget = -1;
  auto quota_sub = [&](const std::string& name, const std::string& help) {
    CLI::App* c = quota_cmd->add_subcommand(name, help);
    c->add_option("TENANT", quota_tenant, "tenant name")->required();
    c->add_option("--server", server, "cpn server address (env CPN_SERVER)")->capture_default_str();
    c->add_option("--token-file", g_token_file, "file holding your API token");
    c->add_flag("--json", as_json, "print the server's JSON");
    return c;
  };
  auto print_quota = [&](const Json& q) {
    std::cout << "tenant " << q["tenant"].get<std::string>() << ": ";
    if (!q.value("set", false)) {
      std::cout << "no quota\n";
      return;
    }
    std::string cards;
    for (const auto& [cls, n] : q["max_cards"].items()) {
      cards += (cards.empty() ? "" : ", ") + std::to_string(n.get<int64_t>()) + " " +
               (cls == "*" ? std::string("in all") : cls);
    }
    std::cout << "at most " << (cards.empty() ? std::string("any number of") : cards)
              << " card(s) at once; "
              << (q.contains("monthly_budget_cny") ? Cny(q["monthly_budget_cny"]) + " a month"
                                                   : std::string("no monthly budget"))
              << "\n";
  };
  CLI::App* quota_get = quota_sub("get", "show a tenant's quota");
  quota_get->callback([&] {
    auto r = Fetch("GET", "/v1/tenants/" + net::UrlEncode(quota_tenant) + "/quota");
    if (r) print_quota(*r);
  });
  CLI::App* quota_set = quota_sub("set", "set a tenant's quota (operators); replaces the old one");
  quota_set->add_option("--max-cards", quota_cards,
                        "CLASS=N: at most N cards of a vendor (nvidia, huawei, ...) or of all "
                        "(*) at once; repeatable");
  quota_set
      ->add_option("--monthly-budget-cny", quota_budget,
                   "charges plus unfinished jobs' estimates per calendar month (UTC)")
      ->check(CLI::Range(0.0, 1e12));
  quota_set->callback([&] {
    Json body{{"max_cards", Json::object()}};
    for (const auto& c : quota_cards) {
      size_t eq = c.find('=');
      int64_t n = -1;
      if (eq != std::string::npos) {
        auto [p, ec] = std::from_chars(c.data() + eq + 1, c.data() + c.size(), n);
        if (ec != std::errc() || p != c.data() + c.size()) n = -1;
      }
      if (eq == std::string::npos || eq == 0 || n < 0) {
        rc = Fail(InvalidArgument("--max-cards '" + c + "': expected CLASS=N, e.g. nvidia=64"));
        return;
      }
      body["max_cards"][c.substr(0, eq)] = n;
    }
    if (quota_budget >= 0) body["monthly_budget_cny"] = quota_budget;
    auto r = Fetch("PUT", "/v1/tenants/" + net::UrlEncode(quota_tenant) + "/quota", body.dump());
    if (r) print_quota(*r);
  });

  // bill, statement
  std::string bill_party, bill_month;
  bool bill_csv = false;
  auto money_cmd = [&](const std::string& name, const std::string& help, const char* party,
                       const char* party_help) {
    CLI::App* c = client_cmd(name, help);
    c->add_option(std::string("--") + party, bill_party, party_help);
    c->add_option("--month", bill_month, "YYYY-MM (default: this month, UTC)");
    c->add_flag("--csv", bill_csv, "print one CSV row per job instead of a table");
    return c;
  };
  auto money_query = [&](const char* path, const char* party) {
    std::string q = std::string(path) + "?";
    if (!bill_party.empty()) q += std::string(party) + "=" + net::UrlEncode(bill_party) + "&";
    if (!bill_month.empty()) q += "month=" + net::UrlEncode(bill_month);
    return q;
  };
  auto csv_cell = [](const Json& v) {
    std::string s = v.is_string() ? v.get<std::string>() : v.dump();
    if (s.find_first_of(",\"\n") == std::string::npos) return s;
    std::string out = "\"";
    for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
    return out + "\"";
  };
  auto print_csv = [&](const Json& lines, const std::vector<std::string>& cols) {
    std::string header;
    for (const auto& c : cols) header += (header.empty() ? "" : ",") + c;
    std::cout << header << "\n";
    for (const auto& l : lines) {
      std::string row;
      for (size_t i = 0; i < cols.size(); ++i) row += (i ? "," : "") + csv_cell(l[cols[i]]);
      std::cout << row << "\n";
    }
  };
  CLI::App* bill_cmd =
      money_cmd("bill", "a tenant's monthly invoice: every job's usage at its order's price",
                "tenant", "the tenant (default: your token's)");
  bill_cmd->callback([&] {
    auto r = Fetch("GET", money_query("/v1/bills", "tenant"));
    if (!r) return;
    if (bill_csv) {
      print_csv((*r)["lines"],
                {"job", "site", "accelerator", "ended_ms", "card_hours", "price_cny_per_card_hour",
                 "compute_cny", "transfer_cny", "total_cny", "energy_kwh", "carbon_kg", "data_gb"});
      return;
    }
    const Json& t = (*r)["totals"];
    std::cout << fmt::format("Invoice: tenant {}, {} ({} jobs)\n\n",
                             (*r)["tenant"].get<std::string>(), (*r)["month"].get<std::string>(),
                             t["jobs"].get<int64_t>());
    Table lines({"JOB", "SITE", "ACCELERATOR", "CARD-H", "CNY/CARD-H", "COMPUTE", "TRANSFER",
                 "TOTAL", "KWH", "KG CO2"});
    for (const auto& l : (*r)["lines"]) {
      lines.Add({l["job"], l["site"], l["accelerator"], Number(l["card_hours"], 3),
                 Number(l["price_cny_per_card_hour"], 2), Cny(l["compute_cny"]),
                 Cny(l["transfer_cny"]), Cny(l["total_cny"]), Number(l["energy_kwh"], 1),
                 Number(l["carbon_kg"], 1)});
    }
    std::cout << lines.Render() << "\n";
    Table acc({"ACCELERATOR", "CARD-H", "TOTAL"});
    for (const auto& a : (*r)["by_accelerator"]) {
      acc.Add({a["accelerator"], Number(a["card_hours"], 3), Cny(a["total_cny"])});
    }
    std::cout << acc.Render();
    std::cout << fmt::format(
        "\nTotal {} ({} compute + {} data transfer); {} card-h, {} kWh, {} kg CO2, {} GB moved\n",
        Cny(t["total_cny"]), Cny(t["compute_cny"]), Cny(t["transfer_cny"]),
        Number(t["card_hours"], 3), Number(t["energy_kwh"], 1), Number(t["carbon_kg"], 1),
        Number(t["data_gb"], 1));
  });
  CLI::App* statement_cmd =
      money_cmd("statement", "a provider's monthly settlement: what its sites earned, less the fee",
                "provider", "the provider id (default: your token's)");
  statement_cmd->callback([&] {
    auto r = Fetch("GET", money_query("/v1/statements", "provider"));
    if (!r) return;
    if (bill_csv) {
      print_csv((*r)["lines"], {"job", "tenant", "site", "accelerator", "ended_ms", "card_hours",
                                "charged_cny", "fee_cny", "revenue_cny"});
      return;
    }
    const Json& t = (*r)["totals"];
    std::cout << fmt::format("Settlement: provider {}, {} ({} jobs; platform fee {:.2f}%)\n\n",
                             (*r)["provider"].get<std::string>(), (*r)["month"].get<std::string>(),
                             t["jobs"].get<int64_t>(),
                             (*r)["platform_fee_bps"].get<int64_t>() / 100.0);
    Table lines({"JOB", "TENANT", "SITE", "ACCELERATOR", "CARD-H", "CHARGED", "FEE", "REVENUE"});
    for (const auto& l : (*r)["lines"]) {
      lines.Add({l["job"], l["tenant"], l["site"], l["accelerator"], Number(l["card_hours"], 3),
                 Cny(l["charged_cny"]), Cny(l["fee_cny"]), Cny(l["revenue_cny"])});
    }
    std::cout << lines.Render() << "\n";
    Table sites({"SITE", "CARD-H", "REVENUE"});
    for (const auto& s : (*r)["by_site"]) {
      sites.Add({s["site"], Number(s["card_hours"], 3), Cny(s["revenue_cny"])});
    }
    std::cout << sites.Render();
    std::cout << fmt::format("\nCharged {}, platform fee {}, revenue {}\n", Cny(t["charged_cny"]),
                             Cny(t["fee_cny"]), Cny(t["revenue_cny"]));
  });

  // audit
  std::string audit_principal, audit_action, audit_object;
  int64_t audit_after = 0, audit_limit = 100;
  CLI::App* audit_cmd = client_cmd("audit", "read the audit log (operators)");
  audit_cmd->add_option("--principal", audit_principal, "only this principal (role:subject/user)");
  audit_cmd->add_option("--action", audit_action, "only this action (job.submit, site.drain, ...)");
  audit_cmd->add_option("--object", audit_object, "only this object id");
  audit_cmd->add_option("--after", audit_after, "lines after this sequence number");
  audit_cmd->add_option("--limit", audit_limit, "at most this many lines")
      ->check(CLI::Range(int64_t{1}, int64_t{1000}));
  audit_cmd->callback([&] {
    std::string q = fmt::format("/v1/audit?after={}&limit={}", audit_after, audit_limit);
    if (!audit_principal.empty()) q += "&principal=" + net::UrlEncode(audit_principal);
    if (!audit_action.empty()) q += "&action=" + net::UrlEncode(audit_action);
    if (!audit_object.empty()) q += "&object=" + net::UrlEncode(audit_object);
    auto r = Fetch("GET", q);
    if (!r) return;
    Table t({"SEQ", "TIME (UTC)", "PRINCIPAL", "ACTION", "OBJECT", "FROM", "OUTCOME", "RULE"});
    for (const auto& a : (*r)["audit"]) {
      t.Add({std::to_string(a["seq"].get<int64_t>()),
             fmt::format("{:%Y-%m-%d %H:%M:%S}",
                         fmt::gmtime(static_cast<std::time_t>(a["time_ms"].get<int64_t>() / 1000))),
             a["principal"], a["action"], a["object"], a["peer"], a["outcome"], a["detail"]});
    }
    std::cout << t.Render();
  });

  // resources
  std::string r_acc, r_area, r_sw, r_jur;
  double r_max_price = -1;
  int64_t r_min_free = 0;
  CLI::App* res_cmd =
      client_cmd("resources", "discover pools by accelerator, area, price, free cards");
  res_cmd->add_option("--accelerator", r_acc, "catalog id, e.g. ascend-910b");
  res_cmd->add_option("--area", r_area, "hub/cluster area, e.g. nx");
  res_cmd->add_option("--jurisdiction", r_jur, "e.g. CN-NX");
  res_cmd->add_option("--software", r_sw, "software the accelerator must run, e.g. cuda");
  res_cmd->add_option("--max-price", r_max_price, "CNY per card-hour");
  res_cmd->add_option("--min-free", r_min_free, "at least this many free cards")
      ->check(CLI::Range(int64_t{0}, kMaxCardsPerJob));
  res_cmd->callback([&] {
    std::string q;
    auto add = [&](const char* k, const std::string& v) {
      if (!v.empty()) q += (q.empty() ? "?" : "&") + std::string(k) + "=" + net::UrlEncode(v);
    };
    add("accelerator", r_acc);
    add("area", r_area);
    add("jurisdiction", r_jur);
    add("software", r_sw);
    if (r_max_price >= 0) add("max_price", fmt::format("{}", r_max_price));
    if (r_min_free > 0) add("min_free", std::to_string(r_min_free));
    auto r = Fetch("GET", "/v1/resources" + q);
    if (!r) return;
    Table t(
        {"POOL", "ACCELERATOR", "FREE", "CARDS", "PRICE/CARD-H", "FP16 PFLOPS", "UTIL", "STATE"});
    for (const auto& p : (*r)["pools"]) {
      std::string util = "-";
      if (p["telemetry"].is_object()) {
        util = Number(p["telemetry"].value("utilisation", 0.0) * 100, 0) + "%";
      }
      t.Add({p["pool"], p["accelerator"], std::to_string(p["free_cards"].get<int64_t>()),
             std::to_string(p["cards"].get<int64_t>()), Cny(p["price_cny_per_card_hour"]),
             Number(p["fp16_tflops_total"].get<double>() / 1000, 1), util, p["site_state"]});
    }
    std::cout << (t.empty() ? "no pools match\n" : t.Render());
  });

  // quote
  std::string quote_file, quote_topology;
  bool offline = false;
  CLI::App* quote_cmd = client_cmd("quote", "rank where a job would run, without submitting it");
  quote_cmd->add_option("FILE", quote_file, "job spec (JSON; - for stdin)")->required();
  quote_cmd->add_flag("--offline", offline,
                      "quote against the topology file with every pool free; no server needed");
  quote_cmd->add_option("--topology", quote_topology, "topology for --offline (default: shipped)");
  quote_cmd->callback([&] {
    auto text = ReadInput(quote_file);
    if (!text.ok()) {
      rc = Fail(text.status());
      return;
    }
    Result<Json> decision = Internal("unset");
    if (offline) {
      auto catalog = Catalog::LoadDefault();
      if (!catalog.ok()) {
        rc = Fail(catalog.status());
        return;
      }
      auto topo = quote_topology.empty() ? Topology::LoadDefault(*catalog)
                                         : Topology::LoadFile(quote_topology, *catalog);
      if (!topo.ok()) {
        rc = Fail(topo.status());
        return;
      }
      auto doc = ParseJson(*text, quote_file);
      if (!doc.ok()) {
        rc = Fail(doc.status());
        return;
      }
      auto spec = JobSpecFromJson(*doc, *catalog);
      if (!spec.ok()) {
        rc = Fail(spec.status());
        return;
      }
      sched::SchedulerInput in{&*catalog, &*topo, nullptr};
      decision = sched::DecisionToJson(sched::Decide(*spec, in), *spec, *catalog, *topo);
    } else {
      decision = Call(server, "POST", "/v1/quotes", *text);
    }
    if (!decision.ok()) {
      rc = Fail(decision.status());
      return;
    }
    std::cout << (as_json ? decision->dump(2) + "\n" : RenderDecision(*decision));
  });

  // submit
  std::string submit_file, submit_key;
  int submit_retries = 5;
  CLI::App* submit_cmd = client_cmd("submit", "submit a job; prints its id and placement");
  submit_cmd->add_option("FILE", submit_file, "job spec (JSON; - for stdin)")->required();
  submit_cmd->add_option("--idempotency-key", submit_key,
                         "key that makes retries safe: the same key never creates a second job "
                         "(default: a new random key, reused for this command's own retries)");
  submit_cmd
      ->add_option("--retries", submit_retries,
                   "retries when the server cannot be reached (default 5, backing off from "
                   "0.25 s)")
      ->check(CLI::Range(0, 100));
  submit_cmd->callback([&] {
    auto text = ReadInput(submit_file);
    if (!text.ok()) {
      rc = Fail(text.status());
      return;
    }
    if (submit_key.empty()) {
      std::mt19937_64 rng(std::random_device{}());
      submit_key = fmt::format("cli-{:016x}{:016x}", rng(), rng());
    }
    // Retrying is safe: the key makes the server return the first attempt's
    // job if that one landed and only its reply was lost.
    Result<Json> reply = Unavailable("not sent");
    int64_t backoff_ms = 250;
    for (int attempt = 0; attempt <= submit_retries; ++attempt) {
      reply = Call(server, "POST", "/v1/jobs", *text, {{"Idempotency-Key", submit_key}});
      if (reply.ok() || reply.status().code() != StatusCode::kUnavailable) break;
      if (attempt < submit_retries) {
        std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms));
        backoff_ms = std::min<int64_t>(backoff_ms * 2, 4000);
      }
    }
    if (!reply.ok()) {
      rc = Fail(reply.status());
      return;
    }
    if (as_json) {
      std::cout << reply->dump(2) << "\n";
      return;
    }
    std::optional<Json> r = std::move(reply).value();
    std::cout << fmt::format("{}  {}  {}\n{}\n", (*r)["id"].get<std::string>(),
                             (*r)["state"].get<std::string>(), OrDash((*r)["pool"]),
                             (*r)["reason"].get<std::string>());
  });

  // site drain | resume
  std::string site_action, site_target;
  CLI::App* site_cmd =
      client_cmd("site", "drain a site (no new placements; its running jobs finish) or resume it");
  site_cmd->add_option("ACTION", site_action, "drain or resume")
      ->required()
      ->check(CLI::IsMember({"drain", "resume"}));
  site_cmd->add_option("SITE", site_target, "site id, cpn:<node>/<provider>/<site>")->required();
  site_cmd->callback([&] {
    Status valid = ValidateSiteId(site_target, "SITE");
    if (!valid.ok()) {
      rc = Fail(valid);
      return;
    }
    auto r = Fetch("POST", "/v1/sites/" + site_target.substr(4) + "/" + site_action);
    if (!r) return;
    std::cout << fmt::format("{} {}\n", site_target,
                             (*r)["drained"].get<bool>()
                                 ? "drained: no new placements; running jobs finish"
                                 : "resumed: takes placements again");
  });

  // jobs
  std::string j_tenant, j_state, j_page;
  int64_t j_limit = 50;
  CLI::App* jobs_cmd = client_cmd("jobs", "list jobs (paged)");
  jobs_cmd->add_option("--tenant", j_tenant, "only this tenant's jobs");
  jobs_cmd->add_option("--state", j_state, "only jobs in this state");
  jobs_cmd->add_option("--limit", j_limit, "jobs per page")->check(CLI::Range(1, 1000));
  jobs_cmd->add_option("--page-token", j_page, "continue after this job id");
  jobs_cmd->callback([&] {
    std::string q = "?limit=" + std::to_string(j_limit);
    if (!j_tenant.empty()) q += "&tenant=" + net::UrlEncode(j_tenant);
    if (!j_state.empty()) q += "&state=" + net::UrlEncode(j_state);
    if (!j_page.empty()) q += "&page_token=" + net::UrlEncode(j_page);
    auto r = Fetch("GET", "/v1/jobs" + q);
    if (!r) return;
    Table t({"ID", "NAME", "TENANT", "STATE", "POOL", "EST. COST", "CREATED"});
    for (const auto& j : (*r)["jobs"]) {
      std::string cost = j["order"].is_object() && j["order"].contains("total_cny")
                             ? Cny(j["order"]["total_cny"])
                             : "-";
      t.Add({j["id"], j["name"], j["tenant"], j["state"], OrDash(j["pool"]), cost,
             TimeOfMs(j["created_ms"])});
    }
    std::cout << (t.empty() ? "no jobs\n" : t.Render());
    if (r->contains("next_page_token")) {
      std::cout << "more: --page-token " << (*r)["next_page_token"].get<std::string>() << "\n";
    }
  });

  // job
  std::string job_id;
  CLI::App* job_cmd = client_cmd("job", "show one job: placement, why, cost, events");
  job_cmd->add_option("ID", job_id, "job id")->required();
  job_cmd->callback([&] {
    auto r = Call(server, "GET", "/v1/jobs/" + net::UrlEncode(job_id));
    if (!r.ok()) {
      rc = Fail(r.status());
      return;
    }
    auto ev = Call(server, "GET", "/v1/jobs/" + net::UrlEncode(job_id) + "/events");
    if (!ev.ok()) {
      rc = Fail(ev.status());
      return;
    }
    if (as_json) {
      Json out = *r;
      out["events"] = (*ev)["events"];
      std::cout << out.dump(2) << "\n";
      return;
    }
    std::cout << RenderJob(*r, (*ev)["events"]);
  });

  // cancel
  std::string cancel_id;
  CLI::App* cancel_cmd = client_cmd("cancel", "cancel a job");
  cancel_cmd->add_option("ID", cancel_id, "job id")->required();
  cancel_cmd->callback([&] {
    auto r = Fetch("POST", "/v1/jobs/" + net::UrlEncode(cancel_id) + "/cancel");
    if (!r) return;
    std::cout << fmt::format("{}  {}{}\n", (*r)["id"].get<std::string>(),
                             (*r)["state"].get<std::string>(),
                             (*r)["cancel_requested"].get<bool>() && (*r)["state"] != "cancelled"
                                 ? " (cancel requested; the site will stop it)"
                                 : "");
  });

  // logs
  std::string logs_id;
  bool follow = false;
  CLI::App* logs_cmd = app.add_subcommand("logs", "print a job's output (-f follows it)");
  logs_cmd->add_option("--server", server, "cpn server address (env CPN_SERVER)")
      ->capture_default_str();
  logs_cmd->add_option("ID", logs_id, "job id")->required();
  logs_cmd->add_option("--token-file", g_token_file, "file holding your API token");
  logs_cmd->add_flag("-f,--follow", follow, "keep printing until the job ends");
  logs_cmd->callback([&] {
    auto client = ClientFor(server, 40'000);
    if (!client.ok()) {
      rc = Fail(client.status());
      return;
    }
    int64_t offset = 0;
    while (!g_stop) {
      std::string target = fmt::format("/v1/jobs/{}/logs?offset={}{}", net::UrlEncode(logs_id),
                                       offset, follow ? "&follow=1&wait_ms=20000" : "");
      auto r = client->Send("GET", target);
      if (!r.ok()) {
        rc = Fail(r.status());
        return;
      }
      if (r->status >= 400) {
        Json j = Json::parse(r->body, nullptr, false);
        rc = Fail(InvalidArgument(
            j.is_object() && j.contains("error") ? j["error"].value("message", r->body) : r->body));
        return;
      }
      std::cout << r->body << std::flush;
      offset += static_cast<int64_t>(r->body.size());
      bool done = IsTerminalState(r->headers["x-cpn-job-state"]);
      if (!follow || (done && r->body.empty())) break;
    }
  });

  InstallStopHandlers();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return rc;
}

}  // namespace cpn::cli
