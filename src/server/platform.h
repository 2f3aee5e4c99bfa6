// Platform: the national node's logic, independent of HTTP.
//
// It registers sites, senses them through heartbeats (telemetry, liveness),
// quotes and accepts jobs, places them with the scheduler library, hands
// placed jobs to their site's agent in the heartbeat reply, and records every
// state change the agents report. All state is in the Store; the platform's
// in-memory index of unfinished jobs is derived from it (loaded on first use,
// written through), so a restart loses nothing. A mutex serialises mutations so
// two placements can never take the same cards. Job writes are group-committed:
// concurrent submissions decide under the mutex, then share one transaction
// and one disk sync outside it; nothing is acknowledged before it is on disk. Time comes from the
// injected Clock and job ids from the injected generator, so tests are deterministic.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "src/core/catalog.h"
#include "src/core/clock.h"
#include "src/core/job_spec.h"
#include "src/core/topology.h"
#include "src/sched/batch.h"
#include "src/sched/scheduler.h"
#include "src/sched/throughput.h"
#include "src/store/store.h"

namespace cpn {

struct PlatformOptions {
  // A site's lease: a site that has not sent a heartbeat for this long is
  // marked down, gets no new placements, and its jobs are placed again
  // elsewhere. After a server restart every site gets a full lease anew.
  int64_t heartbeat_timeout_ms = 15'000;
  // A job lost with its site this many times fails instead of being placed
  // again.
  int64_t max_attempts = 3;
  // Fair share between tenants counts FP16 capacity-hours used in this window.
  int64_t fair_share_window_ms = 24 * 3'600'000;
  // The platform's fee on every charge, in basis points (500 = 5%).
  int64_t platform_fee_bps = 500;
};

// A tenant's limits: cards held at once by accelerator class (the vendor in
// lower case, "nvidia", "huawei", ...; "*" counts every card) and money per
// calendar month (UTC): charges so far plus the estimates of its unfinished
// jobs. A job that would go over either is refused with the figures.
struct TenantQuota {
  std::map<std::string, int64_t> max_cards;
  std::optional<double> monthly_budget_cny;
};
Result<TenantQuota> QuotaFromJson(const Json& j);
Json QuotaToJson(const TenantQuota& q);
// The quota class of a catalog accelerator: its vendor in lower case,
// spaces as dashes ("moore-threads").
std::string AcceleratorClass(const Catalog& catalog, const std::string& accelerator);

// A job's metered usage: what actually ran (start to end, or to `now` while
// it runs), priced at the order's snapshot.
struct Metering {
  double card_hours = 0, energy_kwh = 0, carbon_kg = 0, data_gb = 0;
  double price_cny_per_card_hour = 0, compute_cny = 0, transfer_cny = 0;
};
Metering Meter(const JobRecord& job, int64_t now_ms);

struct Assignment {
  std::string job_id, pool_id, accelerator;
  int64_t cards = 0;
  Json run;                 // {"command", "env", "workdir"}
  std::string dataset_dir;  // under the site's data root; "" without a dataset path
};

// Asks a data site's agent to copy a job's dataset to the site the job was
// placed on (its transfer service, as its heartbeats advertise it).
struct StagingOrder {
  std::string job_id;
  std::string path;  // under this site's data root
  std::string dest_site, dest_address;
  int64_t dest_port = 0;
  std::string dest_path;  // under the destination's data root
  bool dest_tls = false;  // the destination's transfer service wants TLS
};

struct HeartbeatReply {
  std::vector<Assignment> assignments;
  std::vector<std::string> cancels;
  std::vector<StagingOrder> stagings;
};

// A data site's agent on one staging.
struct StagingReport {
  std::string site_id;
  std::string dest_site;  // where it copied to; a report for an earlier placement is refused
  std::string state;      // done | failed
  std::string reason;
  int64_t bytes_total = 0, bytes_sent = 0, chunks_skipped = 0;
  double seconds = 0;
};

// What an agent says about one job.
struct JobReport {
  std::string site_id;
  std::string state;  // running | succeeded | failed | cancelled
  std::optional<int64_t> exit_code;
  std::string reason;
};

struct ResourceQuery {
  std::string accelerator, area, jurisdiction, software;
  std::optional<double> max_price;
  int64_t min_free = 0;
};

class Platform {
 public:
  Platform(Store& store, const Clock& clock, const Catalog& catalog, const Topology& network,
           std::function<std::string()> new_job_id, PlatformOptions options = {});
  // Commits the writes still queued first.
  ~Platform();
  Platform(const Platform&) = delete;
  Platform& operator=(const Platform&) = delete;

  const Catalog& catalog() const { return catalog_; }

  // Providers: registered explicitly, or implicitly by their first site.
  Result<ProviderRecord> RegisterProvider(const Json& body);
  Status DeregisterProvider(const std::string& id);
  Result<std::vector<ProviderRecord>> ListProviders();

  Result<SiteRecord> RegisterSite(const Json& body);
  Status DeregisterSite(const std::string& id);
  Result<SiteRecord> GetSite(const std::string& id);
  Result<std::vector<SiteRecord>> ListSites();
  // `telemetry` may list the jobs the site is running ("active_jobs"); any
  // of them no longer assigned to it (rescheduled while it was out of
  // contact, or finished) come back in the reply's cancels.
  Result<HeartbeatReply> Heartbeat(const std::string& site_id, const Json& telemetry);
  // Draining: no new placements on the site; its running jobs finish.
  Result<SiteRecord> SetDrained(const std::string& site_id, bool drained);
  Result<Json> Resources(const ResourceQuery& q);

  // Ranked options for `job` on the current network, without submitting.
  Result<Json> Quote(const JobSpec& job);
  // Accepts the job (durably) and places it if capacity is free; a job that
  // fits nowhere is refused with the scheduler's reasons.
  // With an idempotency key, a retry of the same submission (same tenant and
  // key) returns the job the first one created, with *replayed set.
  // `audit`, if given, is written in the same transaction as the new job.
  Result<JobRecord> Submit(const JobSpec& job, const std::string& idempotency_key = "",
                           bool* replayed = nullptr, const AuditRecord* audit = nullptr);
  // The same without waiting for the disk: the job (or a replay) as it will
  // be stored, and in *durable_seq the write to pass to WhenDurable before
  // acknowledging it. The API answers this way, so no thread waits for a
  // sync.
  Result<JobRecord> SubmitNoWait(const JobSpec& job, const std::string& idempotency_key,
                                 bool* replayed, const AuditRecord* audit, uint64_t* durable_seq);
  // Calls `done` once write `seq` and every write before it are on disk
  // (Ok), or the store failed (its error): on the committing thread, or at
  // once on the caller's if that is already known. `done` must not block.
  void WhenDurable(uint64_t seq, std::function<void(Status)> done);
  Result<JobRecord> GetJob(const std::string& id);
  Result<std::vector<JobRecord>> ListJobs(const JobFilter& filter);
  Result<JobRecord> Cancel(const std::string& id);
  Result<std::vector<JobEvent>> Events(const std::string& id);
  Status Report(const std::string& job_id, const JobReport& report);
  // A staging finished at the data site: the job may start (done), or the
  // staging is tried again, failing the job after three failures.
  Status ReportStaging(const std::string& job_id, const StagingReport& report);
  Result<int64_t> AppendLog(const std::string& job_id, const std::string& site_id, int64_t offset,
                            const std::string& data);
  Result<std::string> ReadLog(const std::string& job_id, int64_t offset, int64_t max_bytes);

  // Marks silent sites down and re-plans every pending job in one batch
  // round (sched::BatchScheduler). Called periodically; when nothing changed
  // that could place a waiting job, a round that proved expensive (over
  // 20 ms) is skipped until twenty times its length has passed.
  Status Tick();

  // Appends to the audit log (durably, in the next group commit); the
  // record's time is the platform's clock.
  Status RecordAudit(AuditRecord record);
  Result<std::vector<AuditRecord>> ListAudit(const AuditFilter& filter);
  int64_t NowMs() const { return clock_.NowMs(); }

  // Prometheus text exposition of the platform's state.
  Result<std::string> Metrics();

  // Quotas: set by operators, checked at every submission.
  Status SetQuota(const std::string& tenant, const TenantQuota& quota);
  Result<std::optional<TenantQuota>> GetQuota(const std::string& tenant);

  // Billing: ledger lines of finished jobs (docs/billing.md).
  Result<std::vector<LedgerEntry>> Ledger(const LedgerFilter& filter);
  const PlatformOptions& options() const { return options_; }

  // The JSON view of a job, with metering computed from its times.
  Json JobToJson(const JobRecord& job) const;

 private:
  struct Snapshot {
    std::shared_ptr<const Topology> net;  // registered sites and the network's links
    std::map<std::string, sched::PoolLoad> loads;
    std::map<std::string, int64_t> busy;  // pool id -> cards held by active jobs
  };
  Result<Snapshot> SnapshotLocked();
  // Applies a decision to the job in memory; returns the event to record
  // with it, if its state or reason changed.
  std::optional<JobEvent> ApplyDecisionLocked(JobRecord& job, const JobSpec& spec,
                                              const sched::Decision& d, Snapshot& snap,
                                              bool* placed);
  // Marks sites whose lease ran out down and requeues (or fails, past
  // max_attempts) the jobs they held.
  Status MarkSilentSitesDownLocked();
  // Tick's work, under mu_; its writes are queued, not yet on disk.
  Status RoundLocked();
  // A job its site no longer runs (lease lost, agent restarted): back to
  // the queue, or failed past max_attempts; a pending cancel completes.
  Status LoseJobLocked(JobRecord job, const std::string& why);
  void Learn(const JobRecord& job);
  // Refuses `spec` if it would take its tenant over its quota.
  Status CheckQuotaLocked(const JobSpec& spec, const sched::Decision& d);
  Status LoadQuotasLocked();
  std::map<std::string, TenantQuota> quotas_;
  bool quotas_loaded_ = false;
  // The ledger line of a job that has just ended.
  LedgerEntry ChargeFor(const JobRecord& job) const;
  // The site's record if it is registered (and not deregistered), else
  // NotFound; a malformed id is InvalidArgument.
  Result<SiteRecord> RegisteredSiteLocked(const std::string& id);
  // After a placement: what the job's dataset needs (order.dataset_dir, and
  // order.staging when it must be copied to the chosen site first).
  static void PlanStaging(JobRecord& job, const JobSpec& spec);
  // Schedules `job` on `pool_id` as a batch round decided, with Decide()'s
  // explanation of the job on its own beside it.
  Status PlaceOnLocked(JobRecord& job, const JobSpec& spec, const std::string& pool_id,
                       Snapshot& snap, size_t round_jobs);
  JobEvent Event(const std::string& job_id, const std::string& state, std::string reason) const;
  // Every job write goes through these: applied to active_ at once and
  // queued for the store in order; they return the write's number for
  // WaitDurable, which their callers call after releasing mu_ (a round's
  // many writes share one sync; see ChangeDurably).
  Result<uint64_t> CreateLocked(const JobRecord& job, std::vector<JobEvent> events,
                                std::vector<AuditRecord> audit = {});
  Result<uint64_t> QueueUpdateLocked(const JobRecord& job, const JobEvent& event);
  // Runs `change` under mu_, then waits outside it for every write queued
  // so far (the change's own, or the earlier one a retried report repeats),
  // so no disk sync holds the platform lock; returns `change`'s result.
  template <typename Change>
  auto ChangeDurably(Change change) -> decltype(change());
  Result<JobRecord> CancelLocked(const std::string& id);
  Status ReportLocked(const std::string& job_id, const JobReport& report);
  Status ReportStagingLocked(const std::string& job_id, const StagingReport& report);
  Result<uint64_t> EnqueueLocked(JobWrite write);
  // Returns once write `seq` and every write before it are on disk. Call
  // it without mu_ (see ChangeDurably): a sync under mu_ stalls every
  // submission. A failed commit leaves active_ ahead of
  // the store: every later write is refused until a restart reloads the
  // truth from the store (as LevelDB does with a background error).
  Status WaitDurable(uint64_t seq);
  uint64_t LastQueuedSeq();
  // The group commit's thread: commits everything queued in one
  // transaction (one disk sync) while the next writes queue.
  void CommitLoop();
  // The job as the platform knows it now: active_ first, else the store.
  Result<JobRecord> FindLocked(const std::string& id);
  // The job's parsed spec, cached while it is unfinished.
  const JobSpec* SpecLocked(const JobRecord& job);
  // Registered sites changed (registered, left, drained, resumed, down, up):
  // the cached network view is rebuilt on next use and the next tick re-plans.
  void NetworkChangedLocked();
  void Remember(const JobRecord& job);
  void CountBusy(const JobRecord& job, int64_t sign);
  Status LoadActiveLocked();

  Store& store_;
  const Clock& clock_;
  const Catalog& catalog_;
  // The catalog with efficiencies learnt from completed jobs; estimates use it.
  sched::ThroughputMatrix throughput_;
  Catalog effective_;
  const Topology& network_;  // supplies links; sites come from registrations
  std::function<std::string()> new_job_id_;
  PlatformOptions options_;
  int64_t started_ms_ = 0;  // leases count from here after a restart
  // The unfinished jobs, derived from the store (loaded on first use, kept
  // in step by every write), so ticks, heartbeats and submissions do not
  // read every active job from disk.
  std::map<std::string, JobRecord> active_;
  std::map<std::string, int64_t> busy_by_pool_;  // cards held by active_'s placed jobs
  // What each tenant's active_ jobs hold, for quotas: cards by accelerator
  // class and in all ("*"), and their orders' estimates in fen.
  struct TenantLoad {
    std::map<std::string, int64_t> cards;
    int64_t committed_fen = 0;
  };
  std::map<std::string, TenantLoad> load_by_tenant_;
  void CountTenant(const JobRecord& job, int64_t sign);
  bool active_loaded_ = false;
  // (tenant, idempotency key) -> id of unfinished jobs, so a retry that races
  // its first submission's commit finds it.
  std::map<std::pair<std::string, std::string>, std::string> active_keys_;
  std::map<std::string, std::shared_ptr<const JobSpec>> specs_;  // of active_
  // A Bloom filter of every (tenant, idempotency key) ever submitted: a key
  // it has not seen (every first submission) needs no store lookup under
  // mu_. 2^24 bits, 4 probes: under 1% false "maybe" up to ~1.5M keys, and
  // a false "maybe" only costs the lookup it saves.
  std::vector<uint64_t> seen_keys_;
  void NoteKeyLocked(const std::string& tenant, const std::string& key);
  bool MaybeSeenKeyLocked(const std::string& tenant, const std::string& key) const;
  // Cached network view for submissions (see NetworkChangedLocked).
  std::shared_ptr<const Topology> net_cache_;
  struct PoolCapacity {
    std::string pool_id;
    int64_t cards = 0;
    bool usable = false;  // site up and not drained
  };
  std::vector<PoolCapacity> pools_cache_;
  // Tick re-plans when capacity or the network changed, or else at most
  // about a tenth of the time (a round over a long queue is not free and
  // holds mu_).
  bool replan_ = true;
  double last_round_s_ = 0;
  std::chrono::steady_clock::time_point last_round_end_{};
  std::mutex mu_;
  // Group commit queue (see CommitLoop); taken after mu_, never before.
  std::mutex log_mu_;
  std::condition_variable log_queued_cv_;   // wakes the committer
  std::condition_variable log_durable_cv_;  // wakes WaitDurable
  std::vector<JobWrite> log_queue_;
  uint64_t log_queued_ = 0, log_durable_ = 0;
  bool committer_idle_ = false, stopping_ = false;
  std::multimap<uint64_t, std::function<void(Status)>> log_waiters_;  // by write
  Status log_error_;
  std::thread committer_;
  sched::BatchScheduler batch_;
};

}  // namespace cpn
