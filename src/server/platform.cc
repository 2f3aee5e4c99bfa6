#include "src/server/platform.h"

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <set>
#include <thread>

#include "src/core/ids.h"
#include "src/sched/batch_input.h"
#include "src/sched/explain.h"

namespace cpn {

namespace {

// A queued job's reason when it waits for free cards (from Decide or a
// batch round), rather than for a reservation or a preemption.
bool IsWaitingForCards(const std::string& reason) {
  return reason.rfind("queued: ", 0) == 0 && reason.rfind("queued: holds", 0) != 0 &&
         reason.rfind("queued: waiting for preempted", 0) != 0;
}

// Back to the queue: no site, pool or start time; the caller says why.
void ReturnToQueue(JobRecord& j) {
  j.state = "pending";
  j.site_id.clear();
  j.pool_id.clear();
  j.started_ms = 0;
  j.preempt_requested = false;
}

}  // namespace

Platform::Platform(Store& store, const Clock& clock, const Catalog& catalog,
                   const Topology& network, std::function<std::string()> new_job_id,
                   PlatformOptions options)
    : store_(store),
      clock_(clock),
      catalog_(catalog),
      throughput_(catalog),
      effective_(catalog),
      network_(network),
      new_job_id_(std::move(new_job_id)),
      options_(options),
      started_ms_(clock.NowMs()) {
  committer_ = std::thread([this] { CommitLoop(); });
}

Platform::~Platform() {
  {
    std::lock_guard lock(log_mu_);
    stopping_ = true;
  }
  log_queued_cv_.notify_one();
  committer_.join();
}

Status Platform::LoadActiveLocked() {
  if (active_loaded_) return Status::Ok();
  auto active = store_.ListActiveJobs();
  if (!active.ok()) return active.status();
  auto keys = store_.ListIdempotencyKeys();
  if (!keys.ok()) return keys.status();
  busy_by_pool_.clear();
  load_by_tenant_.clear();
  active_keys_.clear();
  specs_.clear();
  seen_keys_.assign(std::size_t{1} << 18, 0);
  for (const auto& [tenant, key] : *keys) NoteKeyLocked(tenant, key);
  active_loaded_ = true;
  for (auto& j : *active) Remember(j);
  return Status::Ok();
}

namespace {

// Four bit positions in a 2^24-bit filter for (tenant, key).
std::array<uint32_t, 4> KeyProbes(const std::string& tenant, const std::string& key) {
  const uint64_t h1 = std::hash<std::string>{}(tenant + '\n' + key);
  const uint64_t h2 = (h1 >> 29 | h1 << 35) * 0x9E3779B97F4A7C15ull | 1;
  std::array<uint32_t, 4> out{};
  for (uint64_t i = 0; i < out.size(); ++i) {
    out[i] = static_cast<uint32_t>((h1 + i * h2) & ((uint64_t{1} << 24) - 1));
  }
  return out;
}

}  // namespace

void Platform::NoteKeyLocked(const std::string& tenant, const std::string& key) {
  for (uint32_t bit : KeyProbes(tenant, key)) seen_keys_[bit >> 6] |= uint64_t{1} << (bit & 63);
}

bool Platform::MaybeSeenKeyLocked(const std::string& tenant, const std::string& key) const {
  for (uint32_t bit : KeyProbes(tenant, key)) {
    if ((seen_keys_[bit >> 6] & (uint64_t{1} << (bit & 63))) == 0) return false;
  }
  return true;
}

void Platform::CountTenant(const JobRecord& job, int64_t sign) {
  TenantLoad& load = load_by_tenant_[job.tenant];
  const int64_t cards = sign * job.spec["resources"].value("cards", int64_t{0});
  const std::string acc =
      job.order.value("accelerator", job.spec["resources"].value("accelerator", ""));
  load.cards["*"] += cards;
  if (std::string c = AcceleratorClass(catalog_, acc); !c.empty()) load.cards[c] += cards;
  load.committed_fen += sign * std::llround(job.order.value("total_cny", 0.0) * 100);
}

void Platform::CountBusy(const JobRecord& job, int64_t sign) {
  if (job.pool_id.empty()) return;
  int64_t& cards = busy_by_pool_[job.pool_id];
  cards += sign * job.spec["resources"].value("cards", int64_t{0});
  if (cards == 0) busy_by_pool_.erase(job.pool_id);
}

void Platform::Remember(const JobRecord& job) {
  if (!active_loaded_) return;  // loaded from the store when first needed
  auto it = active_.find(job.id);
  if (it != active_.end()) {
    // Cards given back: a waiting job may fit now.
    if (!it->second.pool_id.empty() && it->second.pool_id != job.pool_id) replan_ = true;
    CountBusy(it->second, -1);
    CountTenant(it->second, -1);
  }
  if (IsTerminalState(job.state)) {
    if (it != active_.end()) active_.erase(it);
    active_keys_.erase({job.tenant, job.idempotency_key});
    specs_.erase(job.id);
  } else {
    CountBusy(job, +1);
    CountTenant(job, +1);
    if (it != active_.end()) {
      it->second = job;
    } else {
      active_.emplace(job.id, job);
    }
    if (!job.idempotency_key.empty()) active_keys_[{job.tenant, job.idempotency_key}] = job.id;
  }
}

Result<uint64_t> Platform::EnqueueLocked(JobWrite write) {
  std::lock_guard lock(log_mu_);
  if (!log_error_.ok()) return log_error_;
  log_queue_.push_back(std::move(write));
  if (committer_idle_) {
    committer_idle_ = false;
    log_queued_cv_.notify_one();
  }
  return ++log_queued_;
}

uint64_t Platform::LastQueuedSeq() {
  std::lock_guard lock(log_mu_);
  return log_queued_;
}

Status Platform::WaitDurable(uint64_t seq) {
  std::unique_lock lock(log_mu_);
  log_durable_cv_.wait(lock, [&] { return log_durable_ >= seq || !log_error_.ok(); });
  return log_durable_ >= seq ? Status::Ok() : log_error_;
}

void Platform::WhenDurable(uint64_t seq, std::function<void(Status)> done) {
  std::unique_lock lock(log_mu_);
  if (log_durable_ >= seq || !log_error_.ok()) {
    Status now = log_durable_ >= seq ? Status::Ok() : log_error_;
    lock.unlock();
    done(now);
    return;
  }
  log_waiters_.emplace(seq, std::move(done));
}

// Writers queue and go on; this thread commits everything queued so far in
// one transaction, and whatever queued meanwhile in the next, so one disk
// sync serves every writer that came during the last. It does not wait to
// gather more: with the API's handlers no longer waiting for their writes
// (they answer when WhenDurable says), a batch is whatever arrived during
// the previous sync.
void Platform::CommitLoop() {
  std::unique_lock lock(log_mu_);
  while (true) {
    committer_idle_ = log_queue_.empty();
    log_queued_cv_.wait(lock, [&] { return !log_queue_.empty() || stopping_; });
    committer_idle_ = false;
    if (log_queue_.empty()) return;  // stopping, with everything committed
    std::vector<JobWrite> batch;
    batch.swap(log_queue_);
    const uint64_t upto = log_queued_;
    Status written = log_error_;
    if (written.ok()) {
      lock.unlock();
      written = store_.WriteJobs(batch);
      lock.lock();
    }
    if (written.ok()) {
      log_durable_ = upto;
    } else if (log_error_.ok()) {
      log_error_ = Unavailable("the platform could not write to its store (" + written.ToString() +
                               "); it accepts no changes until restarted");
    }
    auto end = log_error_.ok() ? log_waiters_.upper_bound(log_durable_) : log_waiters_.end();
    std::vector<std::function<void(Status)>> done;
    for (auto it = log_waiters_.begin(); it != end; ++it) done.push_back(std::move(it->second));
    log_waiters_.erase(log_waiters_.begin(), end);
    const Status outcome = log_error_;
    log_durable_cv_.notify_all();
    lock.unlock();
    for (auto& d : done) d(outcome);
    lock.lock();
  }
}

// The audit line for placing a job whose dataset is classified: where it
// went and the rule that allowed it. Unclassified and public data need none.
std::optional<AuditRecord> ClassifiedPlacement(const JobRecord& job, int64_t now_ms) {
  const Json& ds = job.spec.contains("dataset") ? job.spec["dataset"] : Json::object();
  const std::string c = ds.value("classification", "");
  if (c.empty() || c == "public" || job.state != "scheduled" || job.site_id.empty()) {
    return std::nullopt;
  }
  AuditRecord a;
  a.time_ms = now_ms;
  a.principal = "platform:scheduler";
  a.action = "data.place";
  a.object = job.id;
  a.outcome = "ok";
  const std::string rule(ResidencyName(ClassificationResidency(c).value()));
  a.detail = fmt::format(
      "{} data of tenant {} from {} placed on {}: classification {} keeps it within {}, job "
      "residency {}",
      c, job.tenant, ds.value("site", ""), job.site_id, c, rule, ds.value("residency", ""));
  return a;
}

Result<uint64_t> Platform::CreateLocked(const JobRecord& job, std::vector<JobEvent> events,
                                        std::vector<AuditRecord> audit) {
  CPN_RETURN_IF_ERROR(LoadActiveLocked());
  if (auto placed = ClassifiedPlacement(job, clock_.NowMs())) audit.push_back(*placed);
  auto seq = EnqueueLocked(JobWrite{job, true, std::move(events), std::move(audit), {}});
  if (!seq.ok()) return seq.status();
  Remember(job);
  return *seq;
}

Result<uint64_t> Platform::QueueUpdateLocked(const JobRecord& job, const JobEvent& event) {
  CPN_RETURN_IF_ERROR(LoadActiveLocked());
  JobWrite write{job, false, {event}, {}, {}};
  // The one moment a job is charged: its change from active to ended, in
  // the same transaction (active_ holds only jobs that have not ended).
  if (IsTerminalState(job.state) && active_.count(job.id) && job.started_ms > 0 &&
      !job.order.empty()) {
    write.ledger.push_back(ChargeFor(job));
  }
  if (auto prev = active_.find(job.id);
      prev != active_.end() &&
      (prev->second.state != "scheduled" || prev->second.site_id != job.site_id)) {
    if (auto placed = ClassifiedPlacement(job, clock_.NowMs())) write.audit.push_back(*placed);
  }
  auto seq = EnqueueLocked(std::move(write));
  if (!seq.ok()) return seq.status();
  Remember(job);
  return *seq;
}

template <typename Change>
auto Platform::ChangeDurably(Change change) -> decltype(change()) {
  std::unique_lock lock(mu_);
  auto result = change();
  const uint64_t seq = LastQueuedSeq();
  lock.unlock();
  if (!result.ok()) return result;
  Status durable = WaitDurable(seq);
  if (!durable.ok()) return durable;
  return result;
}

Result<JobRecord> Platform::FindLocked(const std::string& id) {
  CPN_RETURN_IF_ERROR(LoadActiveLocked());
  if (auto it = active_.find(id); it != active_.end()) return it->second;
  return GetJob(id);
}

const JobSpec* Platform::SpecLocked(const JobRecord& job) {
  auto it = specs_.find(job.id);
  if (it != specs_.end()) return it->second.get();
  auto spec = JobSpecFromJson(job.spec, catalog_);
  if (!spec.ok()) return nullptr;  // stored after validation; only a shrunk catalog fails here
  auto shared = std::make_shared<const JobSpec>(std::move(spec).value());
  const JobSpec* out = shared.get();
  specs_[job.id] = std::move(shared);
  return out;
}

void Platform::NetworkChangedLocked() {
  net_cache_.reset();
  replan_ = true;
}

JobEvent Platform::Event(const std::string& job_id, const std::string& state,
                         std::string reason) const {
  return JobEvent{0, job_id, clock_.NowMs(), state, std::move(reason)};
}

Result<ProviderRecord> Platform::RegisterProvider(const Json& body) {
  ProviderRecord p;
  FieldReader r(body, "provider");
  r.String("id", &p.id);
  r.String("name", &p.name);
  r.String("contact", &p.contact, false);
  CPN_RETURN_IF_ERROR(r.Finish());
  auto id = ParseResourceId(p.id, "provider.id");
  if (!id.ok()) return id.status();
  if (!id->is_provider()) {
    return InvalidArgument("provider.id: '" + p.id +
                           "' is not a provider id (cpn:<node>/<provider>)");
  }
  if (p.name.empty() || p.name.size() > 200)
    return InvalidArgument("provider.name: 1-200 characters");
  std::lock_guard lock(mu_);
  auto existing = store_.GetProvider(p.id);
  if (!existing.ok()) return existing.status();
  p.registered_ms = existing->has_value() && (*existing)->state == "active"
                        ? (*existing)->registered_ms
                        : clock_.NowMs();
  CPN_RETURN_IF_ERROR(store_.PutProvider(p));
  return p;
}

Status Platform::DeregisterProvider(const std::string& id) {
  std::lock_guard lock(mu_);
  auto existing = store_.GetProvider(id);
  if (!existing.ok()) return existing.status();
  if (!existing->has_value() || (*existing)->state != "active") {
    return NotFound("provider " + id + " is not registered");
  }
  auto sites = store_.ListSites();
  if (!sites.ok()) return sites.status();
  for (const auto& s : *sites) {
    if (s.state != "deregistered" && s.id.rfind(id + "/", 0) == 0) {
      return FailedPrecondition("provider " + id + " still has site " + s.id +
                                "; deregister its sites first");
    }
  }
  ProviderRecord p = **existing;
  p.state = "deregistered";
  return store_.PutProvider(p);
}

Result<std::vector<ProviderRecord>> Platform::ListProviders() {
  auto all = store_.ListProviders();
  if (!all.ok()) return all.status();
  std::vector<ProviderRecord> out;
  for (auto& p : *all) {
    if (p.state == "active") out.push_back(std::move(p));
  }
  return out;
}

Result<SiteRecord> Platform::RegisterSite(const Json& body) {
  auto site = SiteFromJson(body, "site", catalog_);
  if (!site.ok()) return site.status();
  std::lock_guard lock(mu_);
  auto provider = store_.GetProvider(site->provider_id());
  if (!provider.ok()) return provider.status();
  if (!provider->has_value() || (*provider)->state != "active") {
    ProviderRecord p;
    p.id = site->provider_id();
    p.name = p.id.substr(p.id.rfind('/') + 1);
    p.registered_ms = clock_.NowMs();
    CPN_RETURN_IF_ERROR(store_.PutProvider(p));
  }
  auto existing = store_.GetSite(site->id);
  if (!existing.ok()) return existing.status();
  SiteRecord r;
  r.id = site->id;
  r.site = SiteToJson(*site);
  r.state = "up";
  r.registered_ms = existing->has_value() && (*existing)->state != "deregistered"
                        ? (*existing)->registered_ms
                        : clock_.NowMs();
  r.last_heartbeat_ms = clock_.NowMs();
  if (existing->has_value()) r.telemetry = (*existing)->telemetry;
  // A re-registration may shrink a pool; cards held by running jobs stay held.
  CPN_RETURN_IF_ERROR(store_.PutSite(r));
  NetworkChangedLocked();
  return r;
}

Result<SiteRecord> Platform::RegisteredSiteLocked(const std::string& id) {
  CPN_RETURN_IF_ERROR(ValidateSiteId(id, "site"));
  auto existing = store_.GetSite(id);
  if (!existing.ok()) return existing.status();
  if (!existing->has_value() || (*existing)->state == "deregistered") {
    return NotFound("site " + id + " is not registered");
  }
  return **existing;
}

Status Platform::DeregisterSite(const std::string& id) {
  std::lock_guard lock(mu_);
  auto existing = RegisteredSiteLocked(id);
  if (!existing.ok()) return existing.status();
  SiteRecord r = *existing;
  r.state = "deregistered";
  NetworkChangedLocked();
  return store_.PutSite(r);
}

Result<SiteRecord> Platform::GetSite(const std::string& id) {
  CPN_RETURN_IF_ERROR(ValidateSiteId(id, "site"));
  auto r = store_.GetSite(id);
  if (!r.ok()) return r.status();
  if (!r->has_value()) return NotFound("site " + id + " is not registered");
  return **r;
}

Result<std::vector<SiteRecord>> Platform::ListSites() {
  auto all = store_.ListSites();
  if (!all.ok()) return all.status();
  std::vector<SiteRecord> out;
  for (auto& s : *all) {
    if (s.state != "deregistered") out.push_back(std::move(s));
  }
  return out;
}

Result<HeartbeatReply> Platform::Heartbeat(const std::string& site_id, const Json& telemetry) {
  CPN_RETURN_IF_ERROR(ValidateSiteId(site_id, "site"));
  if (!telemetry.is_object()) return InvalidArgument("heartbeat: expected a JSON object");
  std::unique_lock lock(mu_);
  auto existing = store_.GetSite(site_id);
  if (!existing.ok()) return existing.status();
  if (!existing->has_value() || (*existing)->state == "deregistered") {
    return NotFound("site " + site_id + " is not registered; register it first");
  }
  SiteRecord r = **existing;
  if (r.state != "up") NetworkChangedLocked();
  r.state = "up";
  r.last_heartbeat_ms = clock_.NowMs();
  r.telemetry = telemetry;
  CPN_RETURN_IF_ERROR(store_.PutSite(r));

  HeartbeatReply reply;
  CPN_RETURN_IF_ERROR(LoadActiveLocked());
  std::vector<const JobRecord*> active;  // this site's
  for (const auto& [id, job] : active_) {
    if (job.site_id == site_id) active.push_back(&job);
  }
  std::set<std::string> assigned, holds;
  const Json* listed = nullptr;
  if (auto it = telemetry.find("active_jobs"); it != telemetry.end() && it->is_array()) {
    listed = &*it;
    for (const auto& id : *it) {
      if (id.is_string()) holds.insert(id.get<std::string>());
    }
  }
  for (const JobRecord* held : active) {
    const JobRecord& job = *held;  // active_ keeps its entries while it is read here
    if (listed != nullptr && job.state == "running" && !holds.count(job.id)) {
      // The agent reported it running but holds it no more: it restarted
      // and lost it. Placed again, like a job on a site that lost its lease.
      CPN_RETURN_IF_ERROR(
          LoseJobLocked(job, "site " + site_id + " restarted and no longer runs it"));
      continue;
    }
    assigned.insert(job.id);
    if (job.cancel_requested || job.preempt_requested) {
      reply.cancels.push_back(job.id);
    } else if (job.state == "scheduled" && job.order.contains("staging") &&
               job.order["staging"].value("state", "") != "done") {
      continue;  // waits for its dataset
    } else if (job.state == "scheduled") {
      Assignment a;
      a.job_id = job.id;
      a.pool_id = job.pool_id;
      a.cards = job.spec["resources"]["cards"].get<int64_t>();
      a.accelerator = job.order.value("accelerator", "");
      a.run = job.spec["run"];
      a.dataset_dir = job.order.value("dataset_dir", "");
      reply.assignments.push_back(std::move(a));
    }
  }
  // Reconciliation: what the site still runs but no longer holds (the job
  // was placed again while the site was out of contact, or has ended) is
  // stopped there.
  if (listed != nullptr) {
    for (const auto& id : *listed) {
      if (!id.is_string() || !IsValidJobId(id.get<std::string>())) continue;
      const std::string& job_id = id.get_ref<const std::string&>();
      if (!assigned.count(job_id) &&
          std::find(reply.cancels.begin(), reply.cancels.end(), job_id) == reply.cancels.end()) {
        reply.cancels.push_back(job_id);
      }
    }
  }
  // Datasets this site holds that jobs placed elsewhere wait for: copied
  // to the destination's transfer service (resumable, so asking again after
  // an interruption is cheap; the agent ignores a staging it is running).
  for (const auto& [id, job] : active_) {
    if (job.state != "scheduled" || job.cancel_requested || !job.order.contains("staging")) {
      continue;
    }
    const Json& staging = job.order["staging"];
    if (staging.value("from", "") != site_id || staging.value("state", "") == "done") continue;
    auto dest = store_.GetSite(job.site_id);
    if (!dest.ok() || !dest->has_value()) continue;
    const Json& telemetry = (*dest)->telemetry;
    if (!telemetry.is_object() || !telemetry.contains("transfer")) continue;  // not yet advertised
    StagingOrder o;
    o.job_id = id;
    o.path = staging.value("path", "");
    o.dest_site = job.site_id;
    o.dest_address = telemetry["transfer"].value("address", "");
    o.dest_port = telemetry["transfer"].value("port", int64_t{0});
    o.dest_path = staging.value("dest_path", "");
    o.dest_tls = telemetry["transfer"].value("tls", false);
    reply.stagings.push_back(std::move(o));
  }
  // The jobs handed out must be on disk first: a site never runs a job a
  // crash could forget.
  const uint64_t seq = LastQueuedSeq();
  lock.unlock();
  CPN_RETURN_IF_ERROR(WaitDurable(seq));
  return reply;
}

Result<SiteRecord> Platform::SetDrained(const std::string& site_id, bool drained) {
  std::lock_guard lock(mu_);
  auto existing = RegisteredSiteLocked(site_id);
  if (!existing.ok()) return existing.status();
  SiteRecord r = *existing;
  r.drained = drained;
  NetworkChangedLocked();
  CPN_RETURN_IF_ERROR(store_.PutSite(r));
  return r;
}

Result<Platform::Snapshot> Platform::SnapshotLocked() {
  CPN_RETURN_IF_ERROR(LoadActiveLocked());
  if (net_cache_ == nullptr) {
    auto sites = store_.ListSites();
    if (!sites.ok()) return sites.status();
    std::vector<Site> parsed;
    std::vector<PoolCapacity> pools;
    for (const auto& r : *sites) {
      if (r.state == "deregistered") continue;
      auto s = SiteFromJson(r.site, "stored site", catalog_);
      if (!s.ok())
        continue;  // written by us after validation; cannot fail unless the catalog shrank
      for (const auto& p : s->pools)
        pools.push_back({p.id, p.cards, r.state == "up" && !r.drained});
      parsed.push_back(std::move(s).value());
    }
    // Sites the network file knows but that have not registered still tell
    // the scheduler where data lives (location, jurisdiction), without pools.
    for (const Site& known : network_.sites()) {
      bool registered = std::any_of(parsed.begin(), parsed.end(),
                                    [&](const Site& s) { return s.id == known.id; });
      if (!registered) {
        Site location_only = known;
        location_only.pools.clear();
        parsed.push_back(std::move(location_only));
      }
    }
    net_cache_ = std::make_shared<const Topology>(Topology::Make(
        std::move(parsed), network_.links(), network_.intra_area(), network_.default_link()));
    pools_cache_ = std::move(pools);
  }
  Snapshot snap;
  snap.net = net_cache_;
  snap.busy = busy_by_pool_;
  for (const PoolCapacity& p : pools_cache_) {
    auto held = busy_by_pool_.find(p.pool_id);
    int64_t busy = held == busy_by_pool_.end() ? 0 : held->second;
    snap.loads[p.pool_id] = {std::max<int64_t>(0, p.cards - busy), p.usable};
  }
  return snap;
}

Result<Json> Platform::Resources(const ResourceQuery& q) {
  std::lock_guard lock(mu_);
  auto snap = SnapshotLocked();
  if (!snap.ok()) return snap.status();
  auto sites = store_.ListSites();
  if (!sites.ok()) return sites.status();
  std::map<std::string, const SiteRecord*> records;
  for (const auto& r : *sites) records[r.id] = &r;
  Json out = Json::array();
  for (const Site& s : snap->net->sites()) {
    if (!q.area.empty() && s.area != q.area) continue;
    if (!q.jurisdiction.empty() && s.jurisdiction != q.jurisdiction) continue;
    const SiteRecord* rec = records[s.id];
    for (const Pool& p : s.pools) {
      const AcceleratorModel* m = catalog_.Find(p.accelerator);
      if (!q.accelerator.empty() && p.accelerator != q.accelerator) continue;
      if (q.max_price && p.price_cny_per_card_hour > *q.max_price) continue;
      if (!q.software.empty() && (m == nullptr || !m->HasSoftware(q.software))) continue;
      const auto& load = snap->loads[p.id];
      if (load.free_cards < q.min_free) continue;
      Json pool_telemetry = nullptr;
      if (rec != nullptr && rec->telemetry.contains("pools")) {
        for (const auto& t : rec->telemetry["pools"]) {
          if (t.value("id", "") == p.id) pool_telemetry = t;
        }
      }
      out.push_back({{"pool", p.id},
                     {"site", s.id},
                     {"site_state", rec ? rec->state : "unknown"},
                     {"area", s.area},
                     {"jurisdiction", s.jurisdiction},
                     {"accelerator", p.accelerator},
                     {"cards", p.cards},
                     {"free_cards", load.free_cards},
                     {"price_cny_per_card_hour", p.price_cny_per_card_hour},
                     {"fp16_tflops_total",
                      m ? m->fp16_equivalent_tflops() * static_cast<double>(p.cards) : 0.0},
                     {"software", m ? Json(m->software) : Json::array()},
                     {"pue", s.pue},
                     {"carbon_kg_per_kwh", s.carbon_kg_per_kwh},
                     {"green_share", s.green_share},
                     {"telemetry", pool_telemetry}});
    }
  }
  return out;
}

Result<Json> Platform::Quote(const JobSpec& job) {
  std::lock_guard lock(mu_);
  auto snap = SnapshotLocked();
  if (!snap.ok()) return snap.status();
  sched::SchedulerInput in{&effective_, snap->net.get(), &snap->loads};
  sched::Decision d = sched::Decide(job, in);
  return sched::DecisionToJson(d, job, effective_, (*snap->net));
}

std::optional<JobEvent> Platform::ApplyDecisionLocked(JobRecord& job, const JobSpec& spec,
                                                      const sched::Decision& d, Snapshot& snap,
                                                      bool* placed) {
  *placed = false;
  Json explained = sched::DecisionToJson(d, spec, effective_, (*snap.net));
  job.updated_ms = clock_.NowMs();
  if (const sched::Option* best = d.chosen()) {
    job.state = "scheduled";
    job.site_id = best->site_id;
    job.pool_id = best->pool_id;
    job.attempts += 1;
    job.decision = explained;
    // The order: the chosen option priced now; billing uses this snapshot.
    job.order = sched::OptionToJson(*best);
    PlanStaging(job, spec);
    job.reason = d.summary;
    snap.loads[best->pool_id].free_cards -= spec.cards;
    *placed = true;
    return Event(job.id, "scheduled", d.summary);
  }
  // Still waiting: record why only when the reason changes, so a queued job's
  // event list does not grow every tick.
  if (job.reason != d.summary) {
    job.reason = d.summary;
    job.decision = explained;
    return Event(job.id, "pending", d.summary);
  }
  return std::nullopt;
}

std::string AcceleratorClass(const Catalog& catalog, const std::string& accelerator) {
  const AcceleratorModel* m = catalog.Find(accelerator);
  if (m == nullptr) return "";
  std::string c;
  for (char ch : m->vendor) {
    c += ch == ' ' ? '-' : static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  }
  return c;
}

Result<TenantQuota> QuotaFromJson(const Json& j) {
  FieldReader r(j, "quota");
  TenantQuota q;
  if (const Json* cards = r.Object("max_cards", false)) {
    for (auto it = cards->begin(); it != cards->end(); ++it) {
      const bool name_ok =
          it.key() == "*" || (!it.key().empty() && it.key().size() <= 32 &&
                              it.key().find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") ==
                                  std::string::npos);
      if (!name_ok) {
        r.FailField("max_cards", "'" + it.key().substr(0, 32) +
                                     "' is not an accelerator class (a vendor in lower case, "
                                     "e.g. nvidia, or * for all)");
        break;
      }
      if (!it->is_number_integer() || it->get<int64_t>() < 0 ||
          it->get<int64_t>() > int64_t{1} << 40) {
        r.FailField("max_cards." + it.key(), "expected a whole number of cards, 0 or more");
        break;
      }
      q.max_cards[it.key()] = it->get<int64_t>();
    }
  }
  r.OptionalNumber("monthly_budget_cny", &q.monthly_budget_cny, 0, 1e12);
  CPN_RETURN_IF_ERROR(r.Finish());
  return q;
}

Json QuotaToJson(const TenantQuota& q) {
  Json j{{"max_cards", q.max_cards}};
  if (q.monthly_budget_cny) j["monthly_budget_cny"] = *q.monthly_budget_cny;
  return j;
}

Status Platform::LoadQuotasLocked() {
  if (quotas_loaded_) return Status::Ok();
  auto all = store_.ListQuotas();
  if (!all.ok()) return all.status();
  for (const auto& [tenant, j] : *all) {
    auto q = QuotaFromJson(j);
    if (q.ok()) quotas_[tenant] = *q;
  }
  quotas_loaded_ = true;
  return Status::Ok();
}

Status Platform::SetQuota(const std::string& tenant, const TenantQuota& quota) {
  if (!IsValidName(tenant)) return InvalidArgument("tenant: 1-128 characters of [A-Za-z0-9._-]");
  std::lock_guard lock(mu_);
  CPN_RETURN_IF_ERROR(LoadQuotasLocked());
  CPN_RETURN_IF_ERROR(store_.PutQuota(tenant, QuotaToJson(quota)));
  quotas_[tenant] = quota;
  return Status::Ok();
}

Result<std::optional<TenantQuota>> Platform::GetQuota(const std::string& tenant) {
  std::lock_guard lock(mu_);
  CPN_RETURN_IF_ERROR(LoadQuotasLocked());
  auto it = quotas_.find(tenant);
  if (it == quotas_.end()) return std::optional<TenantQuota>();
  return std::optional<TenantQuota>(it->second);
}

Status Platform::CheckQuotaLocked(const JobSpec& spec, const sched::Decision& d) {
  CPN_RETURN_IF_ERROR(LoadQuotasLocked());
  auto q = quotas_.find(spec.tenant);
  if (q == quotas_.end()) return Status::Ok();
  const TenantQuota& quota = q->second;
  const sched::Option* chosen = d.chosen();
  // The new job's class: the accelerator it names, or the one it is being
  // placed on now; a waiting job that names none counts only under "*".
  std::string job_class = AcceleratorClass(
      catalog_, !spec.accelerator.empty() ? spec.accelerator
                                          : (chosen != nullptr ? chosen->accelerator : ""));
  TenantLoad& load = load_by_tenant_[spec.tenant];
  std::map<std::string, int64_t>& held = load.cards;
  const double committed_cny = static_cast<double>(load.committed_fen) / 100;
  for (const auto& [cls, limit] : quota.max_cards) {
    if (cls != "*" && cls != job_class) continue;
    if (held[cls] + spec.cards > limit) {
      return FailedPrecondition(fmt::format(
          "quota: tenant {} may hold at most {} {} card(s) at once; its unfinished jobs hold {} "
          "and this job asks for {}",
          spec.tenant, limit, cls == "*" ? std::string("") : cls, held[cls], spec.cards));
    }
  }
  if (quota.monthly_budget_cny) {
    const int64_t now = clock_.NowMs();
    LedgerFilter f;
    f.tenant = spec.tenant;
    f.month = fmt::format("{:%Y-%m}", fmt::gmtime(static_cast<std::time_t>(now / 1000)));
    auto lines = store_.ListLedger(f);
    if (!lines.ok()) return lines.status();
    double spent = 0;
    for (const auto& e : *lines) spent += static_cast<double>(e.charge_fen) / 100;
    const sched::Option* estimate =
        chosen != nullptr ? chosen : (!d.ranked.empty() ? &d.ranked.front() : nullptr);
    const double this_job = estimate != nullptr ? estimate->total_cny : 0;
    if (spent + committed_cny + this_job > *quota.monthly_budget_cny) {
      return FailedPrecondition(fmt::format(
          "quota: tenant {}'s budget for {} is {:.2f} CNY; charged so far {:.2f}, unfinished "
          "jobs' estimates {:.2f}, this job's estimate {:.2f}",
          spec.tenant, f.month, *quota.monthly_budget_cny, spent, committed_cny, this_job));
    }
  }
  return Status::Ok();
}

Status Platform::RecordAudit(AuditRecord record) {
  record.time_ms = clock_.NowMs();
  JobWrite w;
  w.audit.push_back(std::move(record));
  auto seq = EnqueueLocked(std::move(w));
  if (!seq.ok()) return seq.status();
  return WaitDurable(*seq);
}

Result<std::vector<AuditRecord>> Platform::ListAudit(const AuditFilter& filter) {
  return store_.ListAudit(filter);
}

Result<JobRecord> Platform::Submit(const JobSpec& spec, const std::string& idempotency_key,
                                   bool* replayed, const AuditRecord* audit) {
  uint64_t seq = 0;
  auto job = SubmitNoWait(spec, idempotency_key, replayed, audit, &seq);
  if (!job.ok()) return job.status();
  // Acknowledged once on disk; concurrent submissions share the sync.
  CPN_RETURN_IF_ERROR(WaitDurable(seq));
  return job;
}

Result<JobRecord> Platform::SubmitNoWait(const JobSpec& spec, const std::string& idempotency_key,
                                         bool* replayed, const AuditRecord* audit,
                                         uint64_t* durable_seq) {
  if (replayed != nullptr) *replayed = false;
  if (!idempotency_key.empty()) {
    bool printable =
        idempotency_key.size() <= 128 && std::all_of(idempotency_key.begin(), idempotency_key.end(),
                                                     [](char c) { return c > 32 && c < 127; });
    if (!printable) {
      return InvalidArgument("Idempotency-Key: expected 1-128 printable ASCII characters");
    }
  }
  std::unique_lock lock(mu_);
  CPN_RETURN_IF_ERROR(LoadActiveLocked());
  if (!idempotency_key.empty()) {
    // An unfinished job is found in memory (its first submission may still
    // be committing); a finished one in the store.
    std::optional<JobRecord> earlier;
    if (auto it = active_keys_.find({spec.tenant, idempotency_key}); it != active_keys_.end()) {
      earlier = active_.at(it->second);
    } else if (MaybeSeenKeyLocked(spec.tenant, idempotency_key)) {
      auto stored = store_.FindJobByIdempotencyKey(spec.tenant, idempotency_key);
      if (!stored.ok()) return stored.status();
      earlier = std::move(stored).value();
    }
    if (earlier.has_value()) {
      if (earlier->spec != JobSpecToJson(spec)) {
        return FailedPrecondition("Idempotency-Key '" + idempotency_key + "' was used for " +
                                  earlier->id + ", a different job; use a new key");
      }
      if (replayed != nullptr) *replayed = true;
      // The first submission may still be on its way to the disk.
      *durable_seq = LastQueuedSeq();
      return *earlier;
    }
  }
  auto snap = SnapshotLocked();
  if (!snap.ok()) return snap.status();
  sched::SchedulerInput in{&effective_, snap->net.get(), &snap->loads};
  sched::Decision d = sched::Decide(spec, in);
  if (d.outcome == sched::Outcome::kInfeasible) {
    return FailedPrecondition("job cannot run anywhere in the network: " + d.summary +
                              " (see `cpn quote` for each pool's reason)");
  }
  CPN_RETURN_IF_ERROR(CheckQuotaLocked(spec, d));
  JobRecord job;
  job.id = new_job_id_();
  job.tenant = spec.tenant;
  job.spec = JobSpecToJson(spec);
  job.created_ms = job.updated_ms = clock_.NowMs();
  job.idempotency_key = idempotency_key;
  // Accepted and placed (or queued) in one transaction: one disk sync.
  std::vector<JobEvent> events = {Event(job.id, "pending", "submitted")};
  bool placed = false;
  if (auto event = ApplyDecisionLocked(job, spec, d, *snap, &placed)) events.push_back(*event);
  if (!idempotency_key.empty()) NoteKeyLocked(spec.tenant, idempotency_key);
  std::vector<AuditRecord> audit_lines;
  if (audit != nullptr) {
    audit_lines.push_back(*audit);
    audit_lines.back().time_ms = job.created_ms;
    audit_lines.back().object = job.id;
  }
  auto seq = CreateLocked(job, std::move(events), std::move(audit_lines));
  if (!seq.ok()) return seq.status();
  // Kept parsed for the rounds while it waits: parsing the stored JSON back
  // was a twentieth of the server's CPU with a long queue.
  if (!placed) specs_.emplace(job.id, std::make_shared<const JobSpec>(spec));
  *durable_seq = *seq;
  return job;
}

Result<JobRecord> Platform::GetJob(const std::string& id) {
  if (!IsValidJobId(id)) {
    return InvalidArgument("'" + id.substr(0, 64) + "' is not a job id (job-<12 hex digits>)");
  }
  auto r = store_.GetJob(id);
  if (!r.ok()) return r.status();
  if (!r->has_value()) return NotFound("job " + id + " not found");
  return **r;
}

Result<std::vector<JobRecord>> Platform::ListJobs(const JobFilter& filter) {
  return store_.ListJobs(filter);
}

Result<std::vector<JobEvent>> Platform::Events(const std::string& id) {
  auto job = GetJob(id);
  if (!job.ok()) return job.status();
  return store_.ListEvents(id);
}

Result<JobRecord> Platform::Cancel(const std::string& id) {
  if (!IsValidJobId(id)) return GetJob(id).status();
  return ChangeDurably([&] { return CancelLocked(id); });
}

Result<JobRecord> Platform::CancelLocked(const std::string& id) {
  auto job = FindLocked(id);
  if (!job.ok()) return job.status();
  JobRecord j = *job;
  if (IsTerminalState(j.state)) {
    return FailedPrecondition("job " + id + " already " + j.state);
  }
  j.updated_ms = clock_.NowMs();
  if (j.state == "pending") {
    j.state = "cancelled";
    j.finished_ms = j.updated_ms;
    j.reason = "cancelled by user before placement";
    CPN_RETURN_IF_ERROR(QueueUpdateLocked(j, Event(id, "cancelled", j.reason)).status());
    return j;
  }
  if (!j.cancel_requested) {
    j.cancel_requested = true;
    CPN_RETURN_IF_ERROR(
        QueueUpdateLocked(j, Event(id, j.state, "cancel requested; waiting for " + j.site_id))
            .status());
  }
  return j;
}

Status Platform::Report(const std::string& job_id, const JobReport& rep) {
  static const std::vector<std::string> kStates = {"running", "succeeded", "failed", "cancelled"};
  if (std::find(kStates.begin(), kStates.end(), rep.state) == kStates.end()) {
    return InvalidArgument("state: expected running, succeeded, failed or cancelled, got '" +
                           rep.state.substr(0, 32) + "'");
  }
  if (!IsValidJobId(job_id)) return GetJob(job_id).status();
  return ChangeDurably([&] { return ReportLocked(job_id, rep); });
}

Status Platform::ReportLocked(const std::string& job_id, const JobReport& rep) {
  auto found = FindLocked(job_id);
  if (!found.ok()) return found.status();
  JobRecord j = *found;
  if (j.site_id != rep.site_id) {
    // A site that lost its lease while running the job may come back with
    // its result. Accepted once, if the job has not been placed again.
    bool lost_here = j.state == "pending" && j.order.value("lost_site", "") == rep.site_id;
    if (lost_here && (rep.state == "succeeded" || rep.state == "failed")) {
      int64_t now = clock_.NowMs();
      j.site_id = rep.site_id;
      j.pool_id = j.order.value("lost_pool", "");
      j.state = rep.state;
      j.started_ms = j.order.value("lost_started_ms", now);
      j.finished_ms = j.updated_ms = now;
      j.exit_code = rep.exit_code;
      j.reason = (rep.reason.empty() ? rep.state : rep.reason) + " on " + rep.site_id +
                 ", reported after the site came back; result accepted";
      return QueueUpdateLocked(j, Event(job_id, j.state, j.reason)).status();
    }
    return FailedPrecondition("job " + job_id + " is not assigned to site " + rep.site_id);
  }
  if (j.state == rep.state) return Status::Ok();  // a retried report
  if (IsTerminalState(j.state)) {
    return FailedPrecondition("job " + job_id + " already " + j.state + "; cannot become " +
                              rep.state);
  }
  if (rep.state == "running" && j.state != "scheduled") {
    return FailedPrecondition("job " + job_id + " is " + j.state + "; cannot start running");
  }
  int64_t now = clock_.NowMs();
  j.updated_ms = now;
  if (j.preempt_requested && rep.state != "running") {
    // Stopped for a higher-priority job: back to the queue, not finished.
    ReturnToQueue(j);
    j.order = Json::object();
    j.reason = "preempted by a higher-priority job; requeued";
    return QueueUpdateLocked(j, Event(job_id, "pending", j.reason)).status();
  }
  std::string reason = rep.reason;
  if (rep.state == "running") {
    j.started_ms = now;
    if (reason.empty()) reason = "started on " + j.pool_id;
  } else {
    if (j.started_ms == 0) j.started_ms = now;
    j.finished_ms = now;
    j.exit_code = rep.exit_code;
    if (reason.empty()) {
      reason = rep.exit_code ? fmt::format("exit code {}", *rep.exit_code) : rep.state;
    }
  }
  j.state = rep.state;
  j.reason = reason;
  CPN_RETURN_IF_ERROR(QueueUpdateLocked(j, Event(job_id, rep.state, reason)).status());
  if (rep.state == "succeeded") Learn(j);
  return Status::Ok();
}

Result<int64_t> Platform::AppendLog(const std::string& job_id, const std::string& site_id,
                                    int64_t offset, const std::string& data) {
  auto job = GetJob(job_id);
  if (!job.ok()) return job.status();
  if (job->site_id != site_id) {
    return FailedPrecondition("job " + job_id + " is not assigned to site " + site_id);
  }
  return store_.AppendLog(job_id, offset, data);
}

Result<std::string> Platform::ReadLog(const std::string& job_id, int64_t offset,
                                      int64_t max_bytes) {
  auto job = GetJob(job_id);
  if (!job.ok()) return job.status();
  return store_.ReadLog(job_id, offset, max_bytes);
}

void Platform::PlanStaging(JobRecord& job, const JobSpec& spec) {
  if (spec.dataset_path.empty()) return;
  if (job.site_id == spec.dataset_site) {
    job.order["dataset_dir"] = spec.dataset_path;
    return;
  }
  // Staged copies live under staged/<data site>/<path>, so a later job on
  // the same data finds them (and the transfer sends nothing it verifies).
  std::string from = spec.dataset_site.substr(4);  // without "cpn:"
  std::replace(from.begin(), from.end(), '/', '_');
  const std::string dest_path = "staged/" + from + "/" + spec.dataset_path;
  job.order["dataset_dir"] = dest_path;
  job.order["staging"] = {{"state", "waiting"},
                          {"from", spec.dataset_site},
                          {"path", spec.dataset_path},
                          {"dest_path", dest_path},
                          {"failures", 0}};
}

Status Platform::ReportStaging(const std::string& job_id, const StagingReport& rep) {
  if (rep.state != "done" && rep.state != "failed") {
    return InvalidArgument("state: expected done or failed, got '" + rep.state.substr(0, 32) + "'");
  }
  if (!IsValidJobId(job_id)) return GetJob(job_id).status();
  return ChangeDurably([&] { return ReportStagingLocked(job_id, rep); });
}

Status Platform::ReportStagingLocked(const std::string& job_id, const StagingReport& rep) {
  auto found = FindLocked(job_id);
  if (!found.ok()) return found.status();
  JobRecord j = *found;
  if (j.state != "scheduled" || !j.order.contains("staging") ||
      j.order["staging"].value("from", "") != rep.site_id) {
    return FailedPrecondition("job " + job_id + " has no staging from " + rep.site_id);
  }
  if (!rep.dest_site.empty() && rep.dest_site != j.site_id) {
    return FailedPrecondition("job " + job_id + " was placed again, on " + j.site_id +
                              "; this staging to " + rep.dest_site + " no longer counts");
  }
  Json& staging = j.order["staging"];
  if (staging.value("state", "") == "done") return Status::Ok();  // a retried report
  j.updated_ms = clock_.NowMs();
  if (rep.state == "done") {
    staging["state"] = "done";
    staging["bytes_total"] = rep.bytes_total;
    staging["bytes_sent"] = rep.bytes_sent;
    staging["chunks_skipped"] = rep.chunks_skipped;
    staging["seconds"] = rep.seconds;
    std::string why =
        fmt::format("dataset staged from {} to {}: {:.1f} MB sent of {:.1f} MB in {:.1f} s{}",
                    rep.site_id, j.site_id, static_cast<double>(rep.bytes_sent) / 1e6,
                    static_cast<double>(rep.bytes_total) / 1e6, rep.seconds,
                    rep.bytes_sent == 0 && rep.bytes_total > 0 ? " (already there, verified)" : "");
    return QueueUpdateLocked(j, Event(job_id, "scheduled", why)).status();
  }
  const int64_t failures = staging.value("failures", int64_t{0}) + 1;
  staging["failures"] = failures;
  staging["last_error"] = rep.reason;
  if (failures >= 3) {
    j.state = "failed";
    j.finished_ms = j.updated_ms;
    j.reason = fmt::format("staging the dataset from {} failed {} times: {}", rep.site_id, failures,
                           rep.reason);
    return QueueUpdateLocked(j, Event(job_id, "failed", j.reason)).status();
  }
  staging["state"] = "waiting";
  return QueueUpdateLocked(j, Event(job_id, "scheduled",
                                    fmt::format("staging from {} failed (attempt {} of 3): {}; "
                                                "retrying",
                                                rep.site_id, failures, rep.reason)))
      .status();
}

void Platform::Learn(const JobRecord& j) {
  // A completed job's real run time tells how much of peak its accelerator
  // delivered for its class; ThroughputMatrix ignores impossible figures
  // (above peak, e.g. a short stand-in process for a large job).
  auto spec = JobSpecFromJson(j.spec, catalog_);
  const AcceleratorModel* m = catalog_.Find(j.order.value("accelerator", ""));
  if (!spec.ok() || m == nullptr || j.finished_ms <= j.started_ms) return;
  size_t index = catalog_.IndexOf(m);
  throughput_.Observe(spec->job_class, index, spec->work_fp16_eflop, spec->cards,
                      static_cast<double>(j.finished_ms - j.started_ms) / 1000.0);
  effective_.SetEfficiency(index, spec->job_class, throughput_.Efficiency(spec->job_class, index));
}

Status Platform::MarkSilentSitesDownLocked() {
  auto sites = store_.ListSites();
  if (!sites.ok()) return sites.status();
  int64_t now = clock_.NowMs();
  std::set<std::string> lost;
  for (auto& r : *sites) {
    // After a restart every site gets a full lease: its silence may have
    // been the server's.
    int64_t since = std::max(r.last_heartbeat_ms, started_ms_);
    if (r.state == "up" && now - since > options_.heartbeat_timeout_ms) {
      r.state = "down";
      NetworkChangedLocked();
      CPN_RETURN_IF_ERROR(store_.PutSite(r));
      lost.insert(r.id);
    }
  }
  if (lost.empty()) return Status::Ok();
  CPN_RETURN_IF_ERROR(LoadActiveLocked());
  std::vector<JobRecord> held;
  for (const auto& [id, j] : active_) {
    if (lost.count(j.site_id) && j.state != "pending") held.push_back(j);
  }
  for (JobRecord& j : held) {
    CPN_RETURN_IF_ERROR(
        LoseJobLocked(j, fmt::format("site {} lost its lease (no heartbeat for {} s)", j.site_id,
                                     options_.heartbeat_timeout_ms / 1000)));
  }
  return Status::Ok();
}

Status Platform::LoseJobLocked(JobRecord j, const std::string& why) {
  const std::string site = j.site_id;
  int64_t now = clock_.NowMs();
  j.updated_ms = now;
  if (j.cancel_requested) {
    j.state = "cancelled";
    j.finished_ms = now;
    j.reason = "cancelled; " + why + " before confirming";
  } else if (j.attempts >= options_.max_attempts) {
    j.state = "failed";
    j.finished_ms = now;
    j.reason = fmt::format("{} during attempt {} of {}; giving up", why, j.attempts,
                           options_.max_attempts);
  } else {
    // Back to the queue; remember where it ran, so a result the site sends
    // when it comes back can still be accepted.
    j.order["lost_site"] = site;
    j.order["lost_pool"] = j.pool_id;
    if (j.started_ms > 0) j.order["lost_started_ms"] = j.started_ms;
    ReturnToQueue(j);
    j.reason =
        fmt::format("{} during attempt {} of {}; requeued", why, j.attempts, options_.max_attempts);
  }
  // Its callers (Tick, Heartbeat) wait for the disk once, after all writes.
  return QueueUpdateLocked(j, Event(j.id, j.state, j.reason)).status();
}

Status Platform::PlaceOnLocked(JobRecord& job, const JobSpec& spec, const std::string& pool_id,
                               Snapshot& snap, size_t round_jobs) {
  sched::SchedulerInput in{&effective_, snap.net.get(), &snap.loads};
  sched::Decision d = sched::Decide(spec, in);
  Json explained = sched::DecisionToJson(d, spec, effective_, (*snap.net));
  std::optional<sched::Option> chosen;
  size_t rank = 0;
  for (size_t i = 0; i < d.ranked.size() && !chosen; ++i) {
    if (d.ranked[i].pool_id == pool_id) {
      chosen = d.ranked[i];
      rank = i + 1;
    }
  }
  if (!chosen) {
    // Outside what Decide ranks now (it only ranks pools with room for the
    // job alone): estimate the chosen pool directly.
    auto pool = ParseResourceId(pool_id);
    const Site* site = pool.ok() ? snap.net->FindSite(pool->SiteId()) : nullptr;
    const Pool* p = site ? site->FindPool(pool_id) : nullptr;
    const AcceleratorModel* m = p ? effective_.Find(p->accelerator) : nullptr;
    if (m == nullptr) return Internal("batch round chose unknown pool " + pool_id);
    chosen = sched::Estimate(spec, *site, *p, *m, (*snap.net));
  }
  std::string why = rank == 1
                        ? fmt::format(
                              "batch round over {} pending job(s) placed it on {}, its best "
                              "option: {}",
                              round_jobs, pool_id, d.summary)
                        : fmt::format(
                              "batch round over {} pending job(s) placed it on {} (its option "
                              "#{}; the network-wide plan kept {} for others)",
                              round_jobs, pool_id, rank == 0 ? d.ranked.size() + 1 : rank,
                              d.ranked.empty() ? std::string("nothing") : d.ranked.front().pool_id);
  explained["batch"] = {{"round_jobs", round_jobs}, {"option_rank", rank}};
  job.state = "scheduled";
  job.site_id = chosen->site_id;
  job.pool_id = pool_id;
  job.attempts += 1;
  job.decision = explained;
  job.order = sched::OptionToJson(*chosen);
  PlanStaging(job, spec);
  job.reason = why;
  job.updated_ms = clock_.NowMs();
  snap.loads[pool_id].free_cards -= spec.cards;
  return QueueUpdateLocked(job, Event(job.id, "scheduled", why)).status();  // Tick waits
}

Status Platform::Tick() {
  // A round's writes (placements, requeues, reasons) share one disk sync.
  return ChangeDurably([&] { return RoundLocked(); });
}

Status Platform::RoundLocked() {
  CPN_RETURN_IF_ERROR(MarkSilentSitesDownLocked());
  CPN_RETURN_IF_ERROR(LoadActiveLocked());
  // A round over a long queue costs real time under mu_: when nothing
  // changed that could place a waiting job (cards given back, a site up,
  // registered, resumed), an expensive round runs at most a twentieth of the
  // time; cheap rounds always run, so waiting jobs' ageing is seen.
  const auto round_start = std::chrono::steady_clock::now();
  if (!replan_ && last_round_s_ > 0.02 &&
      std::chrono::duration<double>(round_start - last_round_end_).count() < 20 * last_round_s_) {
    return Status::Ok();
  }
  replan_ = false;
  const int64_t now = clock_.NowMs();
  std::vector<const JobRecord*> pending;
  std::vector<const JobSpec*> specs;
  std::vector<sched::RunningJobInfo> running;
  std::vector<const JobRecord*> running_jobs;  // by RunningJobInfo::id
  for (const auto& [id, j] : active_) {
    if (j.state == "pending" && !j.cancel_requested) {
      const JobSpec* spec = SpecLocked(j);
      if (spec == nullptr) continue;
      specs.push_back(spec);
      pending.push_back(&j);
    } else if (!j.pool_id.empty() && !j.order.empty()) {
      sched::RunningJobInfo r;
      r.id = running.size();
      r.pool_id = j.pool_id;
      r.cards = j.spec["resources"].value("cards", int64_t{0});
      double elapsed_h = j.started_ms > 0 ? static_cast<double>(now - j.started_ms) / 3.6e6 : 0;
      r.ends_in_h = std::max(0.0, j.order.value("completion_h", 0.0) - elapsed_h);
      r.priority = j.spec.value("priority", int64_t{0});
      r.preemptible =
          j.spec.value("preemptible", false) && !j.preempt_requested && !j.cancel_requested;
      r.tenant = j.tenant;
      running.push_back(std::move(r));
      running_jobs.push_back(&j);
    }
  }
  if (pending.empty()) return Status::Ok();
  auto snap = SnapshotLocked();
  if (!snap.ok()) return snap.status();
  std::vector<sched::PendingJob> round;
  for (size_t k = 0; k < pending.size(); ++k) {
    round.push_back({specs[k], static_cast<double>(now - pending[k]->created_ms) / 3.6e6, false});
  }
  sched::BatchView view =
      sched::MakeBatchInput(effective_, *snap->net, snap->loads, round, running);
  // Weighted fair share: FP16 PFLOPS-hours each tenant used in the window,
  // from running jobs and jobs that ended inside it.
  const int64_t window_start = now - options_.fair_share_window_ms;
  auto finished = store_.ListJobsFinishedSince(window_start);
  if (!finished.ok()) return finished.status();
  auto add_usage = [&](const JobRecord& j) {
    if (j.started_ms <= 0 || j.order.empty()) return;
    const AcceleratorModel* m = catalog_.Find(j.order.value("accelerator", ""));
    if (m == nullptr) return;
    int64_t from = std::max(j.started_ms, window_start);
    int64_t to = j.finished_ms > 0 ? j.finished_ms : now;
    if (to <= from) return;
    for (size_t t = 0; t < view.tenants.size(); ++t) {
      if (view.tenants[t] == j.tenant) {
        view.input.tenant_usage[t] +=
            static_cast<float>(j.order.value("cards", 0.0) * m->fp16_equivalent_tflops() / 1000.0 *
                               static_cast<double>(to - from) / 3.6e6);
      }
    }
  };
  for (const JobRecord* j : running_jobs) add_usage(*j);
  for (const JobRecord& j : *finished) add_usage(j);
  const sched::PlacementPlan& plan = batch_.Schedule(view.input);
  // Preemptions: ask the sites to stop the victims; each is requeued when its
  // site confirms, and the job that needs the cards is placed in a later
  // round, once they are free.
  for (uint64_t id : plan.preempt) {
    JobRecord victim = *running_jobs[id];
    victim.preempt_requested = true;
    victim.updated_ms = now;
    auto seq = QueueUpdateLocked(
        victim, Event(victim.id, victim.state,
                      "preemption requested: a higher-priority job needs its cards"));
    if (!seq.ok()) return seq.status();
  }
  for (size_t k = 0; k < pending.size(); ++k) {
    const sched::JobPlacement& pl = plan.jobs[k];
    if (pl.outcome == sched::JobOutcome::kPlaced && pl.pool >= 0) {
      JobRecord job = *pending[k];
      CPN_RETURN_IF_ERROR(PlaceOnLocked(job, *specs[k], view.pool_ids[static_cast<size_t>(pl.pool)],
                                        *snap, pending.size()));
      continue;
    }
    std::string why;
    if (pl.outcome == sched::JobOutcome::kPlacedByPreemption) {
      why = fmt::format("queued: waiting for preempted jobs to leave {}",
                        view.pool_ids[static_cast<size_t>(pl.pool)]);
    } else if (pl.outcome == sched::JobOutcome::kReserved) {
      why = fmt::format("queued: holds the reservation on {}, expected to start in {:.1f} h",
                        view.pool_ids[static_cast<size_t>(pl.pool)], pl.start_in_h);
    } else if (pl.outcome == sched::JobOutcome::kInfeasible) {
      sched::SchedulerInput in{&effective_, snap->net.get(), &snap->loads};
      why = sched::Decide(*specs[k], in).summary;
    } else {
      why = fmt::format("queued: no pool that fits has {} free cards now", specs[k]->cards);
    }
    // Record the reason only when it changes, so a queued job's events do
    // not grow every round; a job queued for want of free cards keeps the
    // reason it was queued with (Decide's, which names its best pool).
    const bool still_waiting_for_cards =
        pl.outcome == sched::JobOutcome::kWaiting && IsWaitingForCards(pending[k]->reason);
    if (pending[k]->reason != why && !still_waiting_for_cards) {
      JobRecord job = *pending[k];
      job.reason = why;
      job.updated_ms = now;
      auto seq = QueueUpdateLocked(job, Event(job.id, "pending", why));
      if (!seq.ok()) return seq.status();
    }
  }
  last_round_end_ = std::chrono::steady_clock::now();
  last_round_s_ = std::chrono::duration<double>(last_round_end_ - round_start).count();
  return Status::Ok();
}

Metering Meter(const JobRecord& j, int64_t now_ms) {
  Metering m;
  if (j.started_ms <= 0 || j.order.empty()) return m;
  const int64_t end = j.finished_ms > 0 ? j.finished_ms : now_ms;
  const double run_h = static_cast<double>(std::max<int64_t>(0, end - j.started_ms)) / 3.6e6;
  const double cards = j.order.value("cards", 0.0);
  m.card_hours = cards * run_h;
  m.price_cny_per_card_hour = j.order.value("price_cny_per_card_hour", 0.0);
  // Energy per card-hour and carbon per kWh as the order estimated them.
  const double est_card_h = cards * j.order.value("run_h", 0.0);
  const double order_kwh = j.order.value("energy_kwh", 0.0);
  const double kwh_per_card_h = est_card_h > 0 ? order_kwh / est_card_h : 0;
  const double kg_per_kwh = order_kwh > 0 ? j.order.value("carbon_kg", 0.0) / order_kwh : 0;
  m.energy_kwh = m.card_hours * kwh_per_card_h;
  m.carbon_kg = m.energy_kwh * kg_per_kwh;
  m.compute_cny = m.card_hours * m.price_cny_per_card_hour;
  const bool staged = j.order.contains("staging") && j.order["staging"].is_object();
  if (staged) {
    m.data_gb = j.order["staging"].value("bytes_sent", 0.0) / 1e9;
  } else if (j.spec.contains("dataset") && j.spec["dataset"].value("site", "") != j.site_id) {
    m.data_gb = j.spec["dataset"].value("size_gb", 0.0);
  }
  // The order's data-transfer price is due once the job ran, or its data
  // actually moved; a job stopped before either pays nothing.
  if (m.card_hours > 0 || (staged && m.data_gb > 0)) {
    m.transfer_cny = j.order.value("transfer_cny", 0.0);
  }
  return m;
}

LedgerEntry Platform::ChargeFor(const JobRecord& j) const {
  const Metering m = Meter(j, j.finished_ms);
  LedgerEntry e;
  e.job_id = j.id;
  e.tenant = j.tenant;
  e.site_id = j.site_id;
  if (auto id = ParseResourceId(j.site_id); id.ok()) e.provider_id = id->ProviderId();
  e.pool_id = j.pool_id;
  e.accelerator = j.order.value("accelerator", "");
  e.time_ms = j.finished_ms > 0 ? j.finished_ms : clock_.NowMs();
  e.month = fmt::format("{:%Y-%m}", fmt::gmtime(static_cast<std::time_t>(e.time_ms / 1000)));
  e.card_hours = m.card_hours;
  e.energy_kwh = m.energy_kwh;
  e.carbon_kg = m.carbon_kg;
  e.data_gb = m.data_gb;
  e.price_cny_per_card_hour = m.price_cny_per_card_hour;
  e.compute_fen = std::llround(m.compute_cny * 100);
  e.transfer_fen = std::llround(m.transfer_cny * 100);
  e.charge_fen = e.compute_fen + e.transfer_fen;
  // The fee rounds half up; the provider gets the rest, so every line adds up.
  e.fee_fen = (e.charge_fen * options_.platform_fee_bps + 5000) / 10000;
  e.provider_fen = e.charge_fen - e.fee_fen;
  return e;
}

Result<std::vector<LedgerEntry>> Platform::Ledger(const LedgerFilter& filter) {
  return store_.ListLedger(filter);
}

Json Platform::JobToJson(const JobRecord& j) const {
  Json out{{"id", j.id},
           {"name", j.spec.value("name", "")},
           {"tenant", j.tenant},
           {"state", j.state},
           {"site", j.site_id},
           {"pool", j.pool_id},
           {"reason", j.reason},
           {"attempts", j.attempts},
           {"cancel_requested", j.cancel_requested},
           {"preempt_requested", j.preempt_requested},
           {"exit_code", j.exit_code ? Json(*j.exit_code) : Json(nullptr)},
           {"created_ms", j.created_ms},
           {"updated_ms", j.updated_ms},
           {"started_ms", j.started_ms},
           {"finished_ms", j.finished_ms},
           {"log_bytes", j.log_bytes},
           {"spec", j.spec},
           {"order", j.order},
           {"decision", j.decision}};
  if (j.order.contains("staging")) out["staging"] = j.order["staging"];
  // Metering: what actually ran, priced at the order's snapshot price.
  if (j.started_ms > 0 && !j.order.empty()) {
    const Metering m = Meter(j, clock_.NowMs());
    out["metered"] = {
        {"card_hours", m.card_hours},     {"compute_cny", m.compute_cny},
        {"transfer_cny", m.transfer_cny}, {"total_cny", m.compute_cny + m.transfer_cny},
        {"energy_kwh", m.energy_kwh},     {"carbon_kg", m.carbon_kg},
        {"data_gb", m.data_gb},           {"final", IsTerminalState(j.state)}};
  }
  return out;
}

Result<std::string> Platform::Metrics() {
  std::lock_guard lock(mu_);
  auto sites = store_.ListSites();
  if (!sites.ok()) return sites.status();
  auto snap = SnapshotLocked();
  if (!snap.ok()) return snap.status();
  std::map<std::string, int> site_states;
  for (const auto& s : *sites) site_states[s.state]++;
  std::string out;
  out += "# HELP cpn_sites Registered sites by state.\n# TYPE cpn_sites gauge\n";
  for (const auto& [state, n] : site_states) {
    out += fmt::format("cpn_sites{{state=\"{}\"}} {}\n", state, n);
  }
  out += "# HELP cpn_pool_cards Cards per pool.\n# TYPE cpn_pool_cards gauge\n";
  out +=
      "# HELP cpn_pool_free_cards Cards not held by active jobs.\n"
      "# TYPE cpn_pool_free_cards gauge\n";
  for (const Site& s : snap->net->sites()) {
    for (const Pool& p : s.pools) {
      out += fmt::format("cpn_pool_cards{{pool=\"{}\",accelerator=\"{}\"}} {}\n", p.id,
                         p.accelerator, p.cards);
      out += fmt::format("cpn_pool_free_cards{{pool=\"{}\",accelerator=\"{}\"}} {}\n", p.id,
                         p.accelerator, snap->loads[p.id].free_cards);
    }
  }
  auto counted = store_.CountJobsByState();
  if (!counted.ok()) return counted.status();
  std::map<std::string, int64_t>& job_states = *counted;
  out += "# HELP cpn_jobs Jobs by state.\n# TYPE cpn_jobs gauge\n";
  for (const char* st : {"pending", "scheduled", "running", "succeeded", "failed", "cancelled"}) {
    out += fmt::format("cpn_jobs{{state=\"{}\"}} {}\n", st, job_states[st]);
  }
  return out;
}

}  // namespace cpn
