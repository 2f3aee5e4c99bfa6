// SqliteStore: the embedded Store, one SQLite database file in WAL mode.
//
// Durable on commit (synchronous=FULL), so a job accepted by the API survives
// kill -9. One connection guarded by a mutex: simple and fast enough for one
// server; several servers sharing state need the PostgreSQL store instead.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "src/store/store.h"

struct sqlite3;
struct sqlite3_stmt;

namespace cpn {

class SqliteStore final : public Store {
 public:
  // Opens or creates the database at `path` (":memory:" for tests).
  static Result<std::unique_ptr<SqliteStore>> Open(const std::string& path);
  ~SqliteStore() override;

  Status PutProvider(const ProviderRecord& provider) override;
  Result<std::optional<ProviderRecord>> GetProvider(const std::string& id) override;
  Result<std::vector<ProviderRecord>> ListProviders() override;
  Status PutSite(const SiteRecord& site) override;
  Result<std::optional<SiteRecord>> GetSite(const std::string& id) override;
  Result<std::vector<SiteRecord>> ListSites() override;
  Status WriteJobs(const std::vector<JobWrite>& writes) override;
  Result<std::optional<JobRecord>> GetJob(const std::string& id) override;
  Result<std::optional<JobRecord>> FindJobByIdempotencyKey(const std::string& tenant,
                                                           const std::string& key) override;
  Result<std::vector<JobRecord>> ListJobs(const JobFilter& filter) override;
  Result<std::string> LastJobId() override;
  Result<std::vector<std::pair<std::string, std::string>>> ListIdempotencyKeys() override;
  Result<std::vector<JobRecord>> ListActiveJobs() override;
  Result<std::vector<JobRecord>> ListJobsFinishedSince(int64_t ms) override;
  Result<std::map<std::string, int64_t>> CountJobsByState() override;
  Result<std::vector<JobEvent>> ListEvents(const std::string& job_id) override;
  Status PutToken(const TokenRecord& token) override;
  Result<std::vector<TokenRecord>> ListTokens() override;
  Result<std::vector<AuditRecord>> ListAudit(const AuditFilter& filter) override;
  Result<std::vector<LedgerEntry>> ListLedger(const LedgerFilter& filter) override;
  Status PutQuota(const std::string& tenant, const Json& quota) override;
  Result<std::map<std::string, Json>> ListQuotas() override;
  Result<int64_t> AppendLog(const std::string& job_id, int64_t offset,
                            const std::string& data) override;
  Result<std::string> ReadLog(const std::string& job_id, int64_t offset,
                              int64_t max_bytes) override;

 private:
  explicit SqliteStore(sqlite3* db) : db_(db), read_db_(db) {}
  Status Exec(const std::string& sql);
  Status WriteJobLocked(const JobRecord& job, bool insert);
  Status AppendEventLocked(const JobEvent& event);
  Result<std::vector<JobRecord>> QueryJobsLocked(bool reader, const std::string& where,
                                                 const std::vector<std::string>& args,
                                                 int64_t limit);

  // The writing connection, and the statements of its hot paths (prepared
  // once, finalized in the destructor).
  std::mutex mu_;
  sqlite3* db_;
  std::unordered_map<std::string, sqlite3_stmt*> stmts_;
  // The reading connection: its own for a file, the writer's for :memory:.
  sqlite3* read_db_;
  std::mutex* read_mu_ = &mu_;
  std::unordered_map<std::string, sqlite3_stmt*>* read_stmts_ = &stmts_;
  std::mutex own_read_mu_;
  std::unordered_map<std::string, sqlite3_stmt*> own_read_stmts_;
};

}  // namespace cpn
