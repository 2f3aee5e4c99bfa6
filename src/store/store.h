// Store: the platform's durable state (sites, jobs, job events, job logs).
//
// The server keeps nothing it cannot rebuild from the store: a server killed
// at any point restarts from it. Each mutating call is one transaction, so a
// job's new state and the event that explains it are written together or not
// at all. Implementations: SqliteStore (embedded, WAL). Implementations are
// thread-safe; callers need no locking of their own.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "src/core/json_reader.h"
#include "src/core/status.h"

namespace cpn {

struct ProviderRecord {
  std::string id;  // cpn:<node>/<provider>
  std::string name;
  std::string contact;
  std::string state = "active";  // active | deregistered
  int64_t registered_ms = 0;
};

struct SiteRecord {
  std::string id;
  Json site;                 // SiteToJson shape
  std::string state = "up";  // up | down | deregistered
  bool drained = false;      // no new placements; running jobs finish
  int64_t registered_ms = 0;
  int64_t last_heartbeat_ms = 0;
  Json telemetry = Json::object();
};

struct JobRecord {
  std::string id;
  std::string tenant;
  Json spec;                      // JobSpecToJson shape
  std::string state = "pending";  // pending | scheduled | running | succeeded | failed | cancelled
  std::string site_id, pool_id;
  Json decision = Json::object();  // the scheduler's explanation at placement
  Json order = Json::object();     // the chosen option, priced at order time
  bool cancel_requested = false;
  // The scheduler asked the site to stop the job so a higher-priority one can
  // start; when the site confirms, the job goes back to pending. Stored in the
  // cancel_requested column as 2.
  bool preempt_requested = false;
  int64_t attempts = 0;
  std::optional<int64_t> exit_code;
  std::string reason;
  int64_t created_ms = 0, updated_ms = 0, started_ms = 0, finished_ms = 0;
  int64_t log_bytes = 0;
  // The client's key for this submission: a retry with the same key (and
  // tenant) gets this job back instead of a second one.
  std::string idempotency_key;
};

struct JobEvent {
  int64_t seq = 0;  // assigned by the store
  std::string job_id;
  int64_t time_ms = 0;
  std::string state;
  std::string reason;
};

// An API token. The secret is shown once, at creation; the store keeps only
// its SHA-256. `id` is a public handle for listing and revoking.
struct TokenRecord {
  std::string id;       // "tok-" + 12 hex digits of the hash
  std::string hash;     // SHA-256 of the secret, 64 hex digits
  std::string role;     // operator | provider | tenant | site
  std::string subject;  // the provider id, tenant name or site id ("" for operators)
  std::string user;     // who under the subject holds it (a person, a service)
  int64_t created_ms = 0;
  int64_t expires_ms = 0;  // 0: never
  int64_t revoked_ms = 0;  // 0: live
};

// One line of the append-only audit log: who did what to which object, when,
// from where, and under which rule it was allowed (or why it was refused).
struct AuditRecord {
  int64_t seq = 0;  // assigned by the store
  int64_t time_ms = 0;
  std::string principal;  // "tenant:bj-health/alice", "operator:root", ...
  std::string action;     // "job.submit", "site.drain", "token.create", ...
  std::string object;     // the id acted on
  std::string peer;       // the client's address
  std::string outcome;    // "ok" or the refusal's code
  std::string detail;     // the rule that allowed it, or what was refused
};

// What a finished job cost, written once, in the transaction that ends it:
// its metered usage priced at the order's snapshot, split between the
// provider and the platform. Money is integer fen (0.01 CNY), so
// charge_fen == provider_fen + fee_fen exactly, on every line.
struct LedgerEntry {
  int64_t seq = 0;  // assigned by the store
  std::string job_id, tenant, provider_id, site_id, pool_id, accelerator;
  int64_t time_ms = 0;  // when the job ended
  std::string month;    // "2026-12", UTC, of time_ms
  double card_hours = 0, energy_kwh = 0, carbon_kg = 0, data_gb = 0;
  double price_cny_per_card_hour = 0;  // the order's snapshot
  int64_t compute_fen = 0, transfer_fen = 0;
  int64_t charge_fen = 0;    // compute + transfer: what the tenant pays
  int64_t fee_fen = 0;       // the platform's fee
  int64_t provider_fen = 0;  // the provider's revenue
};

struct LedgerFilter {
  std::string tenant, provider_id, month;  // "" = any
};

struct AuditFilter {
  int64_t after_seq = 0;
  int64_t limit = 100;
  std::string principal, action, object;  // exact matches; "" = any
};

// One write of a group commit: a new job (create) or a new version of an
// existing one, with the events to append, and audit lines written in the
// same transaction (a write may carry only audit lines: job.id empty).
struct JobWrite {
  JobRecord job;
  bool create = false;
  std::vector<JobEvent> events;
  std::vector<AuditRecord> audit;
  std::vector<LedgerEntry> ledger;  // at most one per job, ever
};

struct JobFilter {
  std::string tenant;
  std::string state;
  std::string after_id;  // paging: ids greater than this
  int64_t limit = 50;
};

bool IsTerminalState(const std::string& state);

class Store {
 public:
  virtual ~Store() = default;

  virtual Status PutProvider(const ProviderRecord& provider) = 0;
  virtual Result<std::optional<ProviderRecord>> GetProvider(const std::string& id) = 0;
  virtual Result<std::vector<ProviderRecord>> ListProviders() = 0;

  virtual Status PutSite(const SiteRecord& site) = 0;
  virtual Result<std::optional<SiteRecord>> GetSite(const std::string& id) = 0;
  virtual Result<std::vector<SiteRecord>> ListSites() = 0;

  // Group commit: creates and updates many jobs, with their events, in one
  // transaction (one disk sync); all or nothing. A create whose id is taken
  // is AlreadyExists; an update of an unknown job is NotFound. The platform
  // writes every job change through this.
  virtual Status WriteJobs(const std::vector<JobWrite>& writes) = 0;
  // One job, through WriteJobs.
  Status CreateJob(const JobRecord& job, std::vector<JobEvent> events) {
    JobWrite w;
    w.job = job;
    w.create = true;
    w.events = std::move(events);
    return WriteJobs({w});
  }
  Status CreateJob(const JobRecord& job, const JobEvent& event) {
    return CreateJob(job, std::vector<JobEvent>{event});
  }
  Status UpdateJob(const JobRecord& job, const std::optional<JobEvent>& event) {
    JobWrite w;
    w.job = job;
    if (event) w.events.push_back(*event);
    return WriteJobs({w});
  }
  virtual Result<std::optional<JobRecord>> GetJob(const std::string& id) = 0;
  // The tenant's job submitted with this idempotency key, if any.
  virtual Result<std::optional<JobRecord>> FindJobByIdempotencyKey(const std::string& tenant,
                                                                   const std::string& key) = 0;
  virtual Result<std::vector<JobRecord>> ListJobs(const JobFilter& filter) = 0;
  // The greatest job id stored, or "" when there is none: the server's
  // JobIdSequence starts after it.
  virtual Result<std::string> LastJobId() = 0;
  // Every (tenant, idempotency key) ever stored, for the platform's filter
  // of keys it has seen.
  virtual Result<std::vector<std::pair<std::string, std::string>>> ListIdempotencyKeys() = 0;
  // Jobs not yet in a terminal state, by id.
  virtual Result<std::vector<JobRecord>> ListActiveJobs() = 0;
  // Number of jobs in each state.
  virtual Result<std::map<std::string, int64_t>> CountJobsByState() = 0;
  // Jobs that finished at or after `ms` (for usage over a sliding window).
  virtual Result<std::vector<JobRecord>> ListJobsFinishedSince(int64_t ms) = 0;
  virtual Result<std::vector<JobEvent>> ListEvents(const std::string& job_id) = 0;

  // Tokens: inserted or updated (revocation) by id; all of them (a platform
  // has thousands, not millions).
  virtual Status PutToken(const TokenRecord& token) = 0;
  virtual Result<std::vector<TokenRecord>> ListTokens() = 0;
  // The audit log, oldest first; it is only ever appended (through
  // WriteJobs), never changed.
  virtual Result<std::vector<AuditRecord>> ListAudit(const AuditFilter& filter) = 0;
  // Tenants' quotas (QuotaToJson shape), by tenant.
  virtual Status PutQuota(const std::string& tenant, const Json& quota) = 0;
  virtual Result<std::map<std::string, Json>> ListQuotas() = 0;
  // Ledger lines, oldest first. A second line for a job already charged is
  // ignored, so a job is never billed twice.
  virtual Result<std::vector<LedgerEntry>> ListLedger(const LedgerFilter& filter) = 0;

  // Appends log bytes that start at `offset` of the job's log. Bytes the
  // store already has are skipped, so a retried append is harmless; a gap
  // (offset beyond the end) is an error. Returns the log's new size.
  virtual Result<int64_t> AppendLog(const std::string& job_id, int64_t offset,
                                    const std::string& data) = 0;
  virtual Result<std::string> ReadLog(const std::string& job_id, int64_t offset,
                                      int64_t max_bytes) = 0;
};

}  // namespace cpn
