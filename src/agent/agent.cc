#include "src/agent/agent.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <thread>

#include "src/core/ids.h"
#include "src/transfer/transfer.h"

namespace cpn {
namespace {

constexpr int64_t kMaxBackoffMs = 5000;
constexpr int64_t kLogChunkBytes = 256 * 1024;

Status StatusFromResponse(const net::HttpResponse& r, const std::string& what) {
  if (r.status >= 200 && r.status < 300) return Status::Ok();
  std::string message = r.body.substr(0, 500);
  Json j = Json::parse(r.body, nullptr, false);
  if (j.is_object() && j.contains("error")) message = j["error"].value("message", message);
  StatusCode code = r.status == 404   ? StatusCode::kNotFound
                    : r.status == 409 ? StatusCode::kFailedPrecondition
                    : r.status < 500  ? StatusCode::kInvalidArgument
                                      : StatusCode::kUnavailable;
  return Status(code, what + ": " + message);
}

}  // namespace

Agent::Agent(AgentConfig config, const Catalog& catalog, Executor& executor, const Clock& clock,
             net::HttpClient client)
    : config_(std::move(config)),
      catalog_(catalog),
      executor_(executor),
      clock_(clock),
      client_(std::move(client)) {
  auto id = ParseResourceId(config_.site.id);
  site_path_ = "/v1/sites/" + id->node + "/" + id->provider + "/" + id->site;
  for (const auto& p : config_.site.pools) slot_used_[p.id].assign(p.cards, false);
  std::error_code ec;
  std::filesystem::create_directories(config_.work_dir + "/logs", ec);
}

std::vector<int> Agent::TakeSlots(const std::string& pool_id, int64_t cards) {
  std::vector<int> slots;
  auto& used = slot_used_[pool_id];
  for (size_t i = 0; i < used.size() && static_cast<int64_t>(slots.size()) < cards; ++i) {
    if (!used[i]) slots.push_back(static_cast<int>(i));
  }
  if (static_cast<int64_t>(slots.size()) < cards) return {};
  for (int s : slots) used[s] = true;
  return slots;
}

void Agent::ReleaseSlots(const std::string& pool_id, const std::vector<int>& slots) {
  auto& used = slot_used_[pool_id];
  for (int s : slots) {
    if (s >= 0 && static_cast<size_t>(s) < used.size()) used[s] = false;
  }
}

Json Agent::Telemetry() const {
  Json pools = Json::array();
  for (const auto& p : config_.site.pools) {
    const auto& used = slot_used_.at(p.id);
    int64_t busy = std::count(used.begin(), used.end(), true);
    // A batch system's own view of the pool wins over the agent's slots.
    if (auto cap = executor_.Capacity(p.id)) {
      int64_t busy_there = std::max<int64_t>(0, cap->cards - cap->free_cards);
      const AcceleratorModel* m = catalog_.Find(p.accelerator);
      double board_w = m ? m->board_power_w : 0;
      pools.push_back(
          {{"id", p.id},
           {"cards", cap->cards},
           {"busy_cards", busy_there},
           {"free_cards", cap->free_cards},
           {"utilisation", cap->cards ? static_cast<double>(busy_there) / cap->cards : 0.0},
           {"power_w", board_w * (static_cast<double>(busy_there) +
                                  0.2 * static_cast<double>(cap->cards - busy_there))},
           {"source", cap->source}});
      continue;
    }
    const AcceleratorModel* m = catalog_.Find(p.accelerator);
    double board_w = m ? m->board_power_w : 0;
    // Idle cards draw roughly a fifth of board power; busy ones the full figure.
    double power_w =
        board_w * (static_cast<double>(busy) + 0.2 * static_cast<double>(p.cards - busy));
    pools.push_back({{"id", p.id},
                     {"cards", p.cards},
                     {"busy_cards", busy},
                     {"free_cards", p.cards - busy},
                     {"utilisation", p.cards ? static_cast<double>(busy) / p.cards : 0.0},
                     {"power_w", power_w},
                     {"source", "estimated"}});
  }
  // Every job this site holds until its end is reported, so the platform
  // can stop any it placed again elsewhere while the site was out of
  // contact, and notice jobs a restarted agent no longer has.
  Json active = Json::array();
  for (const auto& [id, j] : jobs_) active.push_back(id);
  Json out{{"time_ms", clock_.NowMs()},
           {"pools", pools},
           {"jobs", jobs_.size()},
           {"active_jobs", active}};
  if (transfer_port_ > 0) {
    out["transfer"] = {
        {"address", transfer_address_}, {"port", transfer_port_}, {"tls", transfer_tls_}};
  }
  return out;
}

Status Agent::Register() {
  auto r = client_.Send("POST", "/v1/sites", SiteToJson(config_.site).dump());
  if (!r.ok()) return r.status();
  CPN_RETURN_IF_ERROR(StatusFromResponse(*r, "register " + config_.site.id));
  registered_ = true;
  spdlog::info("registered {} with {}", config_.site.id, client_.base_url());
  return Status::Ok();
}

Status Agent::Heartbeat() {
  auto r = client_.Send("POST", site_path_ + "/heartbeat", Telemetry().dump());
  if (!r.ok()) return r.status();
  if (r->status == 404) {
    registered_ = false;  // the server forgot us (new database): register again
    return StatusFromResponse(*r, "heartbeat");
  }
  CPN_RETURN_IF_ERROR(StatusFromResponse(*r, "heartbeat"));
  Json reply = Json::parse(r->body, nullptr, false);
  if (!reply.is_object()) return Internal("heartbeat: server sent malformed JSON");
  for (const auto& a : reply.value("assignments", Json::array())) StartJob(a);
  for (const auto& o : reply.value("stagings", Json::array())) StartStaging(o);
  for (const auto& c : reply.value("cancel", Json::array())) {
    if (!c.is_string()) continue;
    std::string id = c.get<std::string>();
    auto it = jobs_.find(id);
    if (it == jobs_.end()) {
      // Cancelled before we started it: just confirm.
      Job j;
      j.finished = true;
      j.final_state = "cancelled";
      j.reason = "cancelled before start";
      jobs_[id] = j;
    } else if (!it->second.finished && !it->second.cancel_requested) {
      it->second.cancel_requested = true;
      Status s = executor_.Kill(id);
      if (!s.ok()) spdlog::warn("cancel {}: {}", id, s.ToString());
    }
  }
  return Status::Ok();
}

void Agent::StartJob(const Json& a) {
  std::string id = a.value("job", "");
  if (!IsValidJobId(id) || jobs_.count(id)) return;  // already ours
  Job job;
  job.pool_id = a.value("pool", "");
  job.log_path = config_.work_dir + "/logs/" + id + ".log";
  int64_t cards = a.value("cards", int64_t{0});
  const Pool* pool = config_.site.FindPool(job.pool_id);
  if (pool == nullptr) {
    job.finished = true;
    job.final_state = "failed";
    job.reason = "site has no pool " + job.pool_id;
    jobs_[id] = job;
    return;
  }
  // Under a batch system that picks devices itself, the agent hands out none.
  if (!executor_.manages_devices()) job.slots = TakeSlots(job.pool_id, cards);
  if (!executor_.manages_devices() && job.slots.empty()) {
    job.finished = true;
    job.final_state = "failed";
    job.reason = fmt::format("pool {} has fewer than {} free card slots", job.pool_id, cards);
    jobs_[id] = job;
    return;
  }
  std::string slots;
  for (int s : job.slots) slots += (slots.empty() ? "" : ",") + std::to_string(s);
  const Json run = a.value("run", Json::object());
  ExecSpec spec;
  spec.job_id = id;
  spec.command = run.value("command", "");
  spec.workdir = run.value("workdir", "");
  if (spec.workdir.empty())
    spec.workdir = config_.work_dir + "/jobs/" + id;
  else if (spec.workdir[0] != '/')
    spec.workdir = config_.work_dir + "/jobs/" + spec.workdir;
  spec.log_path = job.log_path;
  if (const double h = run.value("time_limit_h", 0.0); h > 0) {
    spec.time_limit_s = static_cast<int64_t>(std::ceil(h * 3600));
  }
  const Json env = run.value("env", Json::object());
  for (const auto& [k, v] : env.items()) {
    if (v.is_string()) spec.env[k] = v.get<std::string>();
  }
  spec.env["CPN_JOB_ID"] = id;
  if (std::string dir = a.value("dataset_dir", ""); !dir.empty() && !config_.data_root.empty()) {
    spec.env["CPN_DATASET_DIR"] = config_.data_root + "/" + dir;
  }
  spec.env["CPN_SITE"] = config_.site.id;
  spec.env["CPN_POOL"] = job.pool_id;
  spec.pool_id = job.pool_id;
  spec.cards = cards;
  if (!executor_.manages_devices()) {
    spec.env["CPN_CARD_SLOTS"] = slots;
    const AcceleratorModel* m = catalog_.Find(pool->accelerator);
    if (m != nullptr && m->vendor == "NVIDIA") spec.env["CUDA_VISIBLE_DEVICES"] = slots;
    if (m != nullptr && m->vendor == "Huawei" && m->kind == "npu") {
      spec.env["ASCEND_RT_VISIBLE_DEVICES"] = slots;
    }
  }
  Status s = executor_.Start(spec);
  if (!s.ok()) {
    ReleaseSlots(job.pool_id, job.slots);
    job.finished = true;
    job.final_state = "failed";
    job.reason = "could not start: " + s.message();
  } else {
    job.started = true;
    spdlog::info("started {} on {} slots {}", id, job.pool_id, slots);
  }
  jobs_[id] = job;
}

void Agent::PollJobs() {
  for (auto& [id, job] : jobs_) {
    if (job.finished || !job.started) continue;
    auto r = executor_.Poll(id);
    if (!r.ok()) continue;
    if (r->running || r->finished) job.running = true;
    if (!r->finished) continue;
    job.finished = true;
    job.exit_code = r->exit_code;
    ReleaseSlots(job.pool_id, job.slots);
    if (job.cancel_requested) {
      job.final_state = "cancelled";
      job.reason = "cancelled by user";
    } else if (!r->detail.empty()) {
      job.final_state = "failed";
      job.reason = fmt::format("batch system ended it: {} (exit code {})", r->detail, r->exit_code);
    } else if (r->signaled) {
      job.final_state = "failed";
      job.reason = fmt::format("killed by signal {}", r->signal);
    } else {
      job.final_state = r->exit_code == 0 ? "succeeded" : "failed";
      job.reason = fmt::format("exit code {}", r->exit_code);
    }
    spdlog::info("{} {} ({})", id, job.final_state, job.reason);
  }
}

Status Agent::ShipLog(const std::string& id, Job& job, bool* complete) {
  *complete = true;
  if (job.log_path.empty()) return Status::Ok();
  std::ifstream in(job.log_path, std::ios::binary);
  if (!in) return Status::Ok();  // nothing written yet
  in.seekg(0, std::ios::end);
  int64_t size = in.tellg();
  if (size <= job.log_shipped) return Status::Ok();
  int64_t n = std::min(kLogChunkBytes, size - job.log_shipped);
  std::string data(static_cast<size_t>(n), '\0');
  in.seekg(job.log_shipped);
  in.read(data.data(), n);
  data.resize(static_cast<size_t>(in.gcount()));
  auto r = client_.Send("POST",
                        fmt::format("/v1/jobs/{}/logs?site={}&offset={}", id,
                                    net::UrlEncode(config_.site.id), job.log_shipped),
                        data, "application/octet-stream");
  if (!r.ok()) return r.status();
  CPN_RETURN_IF_ERROR(StatusFromResponse(*r, "log upload for " + id));
  Json reply = Json::parse(r->body, nullptr, false);
  job.log_shipped =
      reply.is_object() ? reply.value("log_bytes", job.log_shipped + n) : job.log_shipped + n;
  *complete = job.log_shipped >= size;
  return Status::Ok();
}

Status Agent::Report(const std::string& id, const std::string& state, const Job& job) {
  Json body{{"site", config_.site.id}, {"state", state}};
  if (state != "running") {
    if (job.exit_code) body["exit_code"] = *job.exit_code;
    body["reason"] = job.reason;
  }
  auto r = client_.Send("POST", "/v1/jobs/" + id + "/status", body.dump());
  if (!r.ok()) return r.status();
  return StatusFromResponse(*r, "report " + id + " " + state);
}

Status Agent::Flush() {
  std::vector<std::string> done;
  // Reports and logs of many jobs take many requests: stop after about a
  // heartbeat period, so the next heartbeat (the site's lease) is never late.
  const int64_t start_ms = clock_.NowMs();
  for (auto& [id, job] : jobs_) {
    if (clock_.NowMs() - start_ms > config_.heartbeat_ms) break;
    // "running" when the executor says so: under Slurm a job may wait in the
    // queue first.
    if (job.running && !job.running_reported) {
      Status s = Report(id, "running", job);
      if (s.code() == StatusCode::kUnavailable) return s;
      // Anything else (e.g. the job was cancelled meanwhile) is final: move on.
      job.running_reported = true;
    }
    bool log_complete = true;
    Status s = ShipLog(id, job, &log_complete);
    if (s.code() == StatusCode::kUnavailable) return s;
    if (!s.ok()) spdlog::warn("{}", s.ToString());
    if (!job.finished || !log_complete) continue;
    s = Report(id, job.final_state, job);
    if (s.code() == StatusCode::kUnavailable) return s;
    if (!s.ok()) spdlog::warn("{}", s.ToString());
    done.push_back(id);
  }
  for (const auto& id : done) jobs_.erase(id);
  return Status::Ok();
}

Agent::~Agent() {
  for (auto& [id, st] : stagings_) {
    if (st->worker.joinable()) st->worker.join();
  }
}

void Agent::StartStaging(const Json& order) {
  const std::string id = order.value("job", "");
  if (!IsValidJobId(id) || stagings_.count(id)) return;  // running, or done and not yet reported
  auto st = std::make_unique<Staging>();
  Staging* raw = st.get();
  const std::string source = config_.data_root + "/" + order.value("path", "");
  const Json to = order.value("to", Json::object());
  const std::string site = config_.site.id;
  const bool has_root = !config_.data_root.empty();
  transfer::TransferOptions options;
  options.tls = to.value("tls", false);
  options.tls_ca_file = config_.transfer_tls_ca;
  raw->worker = std::thread([raw, source, to, site, has_root, options] {
    Json result{{"site", site}, {"to", to.value("site", "")}};
    if (!has_root) {
      result["state"] = "failed";
      result["reason"] = "site " + site + " has no data_root in its agent config";
    } else {
      auto stats =
          transfer::Push(to.value("address", ""), static_cast<int>(to.value("port", int64_t{0})),
                         source, to.value("path", ""), options);
      if (stats.ok()) {
        result["state"] = "done";
        result["bytes_total"] = stats->bytes_total;
        result["bytes_sent"] = stats->bytes_sent;
        result["chunks_skipped"] = stats->chunks_skipped;
        result["seconds"] = stats->seconds;
      } else {
        result["state"] = "failed";
        result["reason"] = stats.status().message();
      }
    }
    std::lock_guard lock(raw->mu);
    raw->result = std::move(result);
    raw->done = true;
  });
  spdlog::info("staging {} for {} to {}", source, id, to.value("site", ""));
  stagings_[id] = std::move(st);
}

void Agent::ReportStagings() {
  for (auto it = stagings_.begin(); it != stagings_.end();) {
    Staging& st = *it->second;
    Json result;
    {
      std::lock_guard lock(st.mu);
      if (!st.done) {
        ++it;
        continue;
      }
      result = st.result;
    }
    auto r = client_.Send("POST", "/v1/jobs/" + it->first + "/staging", result.dump());
    if (!r.ok()) return;  // the server is away: report on a later step
    if (r->status != 200) {
      spdlog::warn("staging report for {} refused: {}", it->first, r->body.substr(0, 200));
    }
    st.worker.join();
    it = stagings_.erase(it);
  }
}

void Agent::RecoverJobs() {
  auto found = executor_.Recover();
  if (!found.ok()) {
    spdlog::warn("could not look for jobs left from an earlier run: {}", found.status().ToString());
    return;  // tried again at the next step
  }
  recovered_ = true;
  for (const std::string& id : *found) {
    if (!IsValidJobId(id) || jobs_.count(id)) continue;
    Job job;
    job.log_path = config_.work_dir + "/logs/" + id + ".log";
    job.started = true;
    jobs_[id] = job;
    spdlog::info("recovered {} from the batch system", id);
  }
}

int64_t Agent::Step() {
  Status s = Status::Ok();
  if (!recovered_) RecoverJobs();
  if (!registered_) s = Register();
  if (s.ok()) s = Heartbeat();
  if (s.ok()) ReportStagings();
  PollJobs();
  if (s.ok() || s.code() != StatusCode::kUnavailable) {
    Status f = Flush();
    if (s.ok()) s = f;
  }
  if (s.code() == StatusCode::kUnavailable) {
    backoff_ms_ = backoff_ms_ == 0 ? 250 : std::min(kMaxBackoffMs, backoff_ms_ * 2);
    spdlog::warn("{}; retrying in {} ms", s.message(), backoff_ms_);
    return backoff_ms_;
  }
  if (!s.ok()) spdlog::warn("{}", s.ToString());
  backoff_ms_ = 0;
  return config_.heartbeat_ms;
}

void Agent::Run(const std::atomic<bool>& stop) {
  while (!stop) {
    int64_t delay = Step();
    // Sleep in small steps so a stop request and finished jobs are seen soon.
    int64_t slept = 0;
    while (!stop && slept < delay) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      slept += 50;
      if (slept % 200 == 0) {
        bool any_finished = false;
        PollJobs();
        for (const auto& [id, j] : jobs_) any_finished = any_finished || j.finished;
        if (any_finished) break;
      }
    }
  }
}

}  // namespace cpn
