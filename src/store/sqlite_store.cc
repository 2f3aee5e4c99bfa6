#include "src/store/sqlite_store.h"

#include <fmt/format.h>
#include <sqlite3.h>

#include <limits>
#include <tuple>

namespace cpn {

bool IsTerminalState(const std::string& s) {
  return s == "succeeded" || s == "failed" || s == "cancelled";
}

namespace {

// A prepared statement that finalizes itself.
// A prepared statement. Statements built from a cache are prepared once per
// connection and reset on destruction instead of finalized, so the hot
// writes do not re-parse SQL.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  Stmt(sqlite3* db, const std::string& sql, std::unordered_map<std::string, sqlite3_stmt*>& cache)
      : db_(db), cached_(true) {
    auto it = cache.find(sql);
    if (it != cache.end()) {
      stmt_ = it->second;
      rc_ = SQLITE_OK;
      return;
    }
    rc_ = sqlite3_prepare_v3(db, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr);
    if (rc_ == SQLITE_OK) {
      cache.emplace(sql, stmt_);
    } else {
      cached_ = false;
    }
  }
  ~Stmt() {
    if (cached_) {
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    } else {
      sqlite3_finalize(stmt_);
    }
  }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  bool ok() const { return rc_ == SQLITE_OK; }
  Status error() const { return Internal(std::string("sqlite: ") + sqlite3_errmsg(db_)); }
  void Bind(int i, const std::string& v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  void BindBlob(int i, const std::string& v) {
    sqlite3_bind_blob(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  void Bind(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  void BindReal(int i, double v) { sqlite3_bind_double(stmt_, i, v); }
  double Real(int col) { return sqlite3_column_double(stmt_, col); }
  void BindNull(int i) { sqlite3_bind_null(stmt_, i); }
  // SQLITE_ROW, SQLITE_DONE or an error code.
  int Step() { return sqlite3_step(stmt_); }
  std::string Text(int col) {
    const unsigned char* t = sqlite3_column_text(stmt_, col);
    int n = sqlite3_column_bytes(stmt_, col);
    return t == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(t), n);
  }
  std::string Blob(int col) {
    const void* b = sqlite3_column_blob(stmt_, col);
    int n = sqlite3_column_bytes(stmt_, col);
    return b == nullptr ? std::string() : std::string(static_cast<const char*>(b), n);
  }
  int64_t Int(int col) { return sqlite3_column_int64(stmt_, col); }
  bool IsNull(int col) { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
  bool cached_ = false;
};

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS providers (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, contact TEXT NOT NULL, state TEXT NOT NULL,
  registered_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sites (
  id TEXT PRIMARY KEY, site TEXT NOT NULL, state TEXT NOT NULL,
  registered_ms INTEGER NOT NULL, last_heartbeat_ms INTEGER NOT NULL, telemetry TEXT NOT NULL,
  drained INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY, tenant TEXT NOT NULL, spec TEXT NOT NULL, state TEXT NOT NULL,
  site_id TEXT NOT NULL, pool_id TEXT NOT NULL, decision TEXT NOT NULL, ord TEXT NOT NULL,
  cancel_requested INTEGER NOT NULL, attempts INTEGER NOT NULL, exit_code INTEGER,
  reason TEXT NOT NULL, created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
  started_ms INTEGER NOT NULL, finished_ms INTEGER NOT NULL, log_bytes INTEGER NOT NULL,
  idem_key TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(state);
CREATE INDEX IF NOT EXISTS jobs_by_tenant ON jobs(tenant, id);
CREATE INDEX IF NOT EXISTS jobs_by_finish ON jobs(finished_ms);
CREATE TABLE IF NOT EXISTS job_events (
  seq INTEGER PRIMARY KEY, job_id TEXT NOT NULL, time_ms INTEGER NOT NULL,
  state TEXT NOT NULL, reason TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS job_events_by_job ON job_events(job_id, seq);
CREATE TABLE IF NOT EXISTS tokens (
  id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, role TEXT NOT NULL, subject TEXT NOT NULL,
  user TEXT NOT NULL, created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL,
  revoked_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
  seq INTEGER PRIMARY KEY, time_ms INTEGER NOT NULL, principal TEXT NOT NULL,
  action TEXT NOT NULL, object TEXT NOT NULL, peer TEXT NOT NULL, outcome TEXT NOT NULL,
  detail TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
  BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
  BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TABLE IF NOT EXISTS ledger (
  seq INTEGER PRIMARY KEY, job_id TEXT NOT NULL UNIQUE, tenant TEXT NOT NULL,
  provider_id TEXT NOT NULL, site_id TEXT NOT NULL, pool_id TEXT NOT NULL,
  accelerator TEXT NOT NULL, time_ms INTEGER NOT NULL, month TEXT NOT NULL,
  card_hours REAL NOT NULL, energy_kwh REAL NOT NULL, carbon_kg REAL NOT NULL,
  data_gb REAL NOT NULL, price REAL NOT NULL, compute_fen INTEGER NOT NULL,
  transfer_fen INTEGER NOT NULL, charge_fen INTEGER NOT NULL, fee_fen INTEGER NOT NULL,
  provider_fen INTEGER NOT NULL, CHECK (charge_fen = fee_fen + provider_fen));
CREATE INDEX IF NOT EXISTS ledger_by_tenant ON ledger(tenant, month);
CREATE INDEX IF NOT EXISTS ledger_by_provider ON ledger(provider_id, month);
CREATE TRIGGER IF NOT EXISTS ledger_no_update BEFORE UPDATE ON ledger
  BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS ledger_no_delete BEFORE DELETE ON ledger
  BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TABLE IF NOT EXISTS quotas (tenant TEXT PRIMARY KEY, quota TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS job_logs (
  job_id TEXT NOT NULL, offset INTEGER NOT NULL, data BLOB NOT NULL,
  PRIMARY KEY (job_id, offset));
)sql";

constexpr const char* kJobColumns =
    "id, tenant, spec, state, site_id, pool_id, decision, ord, cancel_requested, attempts, "
    "exit_code, reason, created_ms, updated_ms, started_ms, finished_ms, log_bytes, idem_key";

JobRecord ReadJob(Stmt& s) {
  JobRecord j;
  j.id = s.Text(0);
  j.tenant = s.Text(1);
  j.spec = Json::parse(s.Text(2), nullptr, false);
  j.state = s.Text(3);
  j.site_id = s.Text(4);
  j.pool_id = s.Text(5);
  j.decision = Json::parse(s.Text(6), nullptr, false);
  j.order = Json::parse(s.Text(7), nullptr, false);
  j.cancel_requested = s.Int(8) == 1;
  j.preempt_requested = s.Int(8) == 2;
  j.attempts = s.Int(9);
  if (!s.IsNull(10)) j.exit_code = s.Int(10);
  j.reason = s.Text(11);
  j.created_ms = s.Int(12);
  j.updated_ms = s.Int(13);
  j.started_ms = s.Int(14);
  j.finished_ms = s.Int(15);
  j.log_bytes = s.Int(16);
  j.idempotency_key = s.Text(17);
  return j;
}

// Rolls back unless committed.
class Transaction {
 public:
  explicit Transaction(sqlite3* db) : db_(db) {
    ok_ = sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK;
  }
  ~Transaction() {
    if (ok_ && !done_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  bool ok() const { return ok_; }
  Status Commit() {
    done_ = true;
    if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
      return Internal(std::string("sqlite commit: ") + sqlite3_errmsg(db_));
    }
    return Status::Ok();
  }

 private:
  sqlite3* db_;
  bool ok_ = false;
  bool done_ = false;
};

}  // namespace

Result<std::unique_ptr<SqliteStore>> SqliteStore::Open(const std::string& path) {
  sqlite3* db = nullptr;
  int rc =
      sqlite3_open_v2(path.c_str(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return Unavailable("cannot open database " + path + ": " + msg);
  }
  std::unique_ptr<SqliteStore> store(new SqliteStore(db));
  sqlite3_busy_timeout(db, 5000);
  for (const char* pragma : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL",
                             "PRAGMA foreign_keys=ON", "PRAGMA cache_size=-65536"}) {
    CPN_RETURN_IF_ERROR(store->Exec(pragma).WithContext(path));
  }
  CPN_RETURN_IF_ERROR(store->Exec(kSchema).WithContext(path));
  // Columns added after the first release: databases made before them gain
  // them here (SQLite has no ADD COLUMN IF NOT EXISTS).
  for (const auto& [table, column, decl] :
       {std::tuple{"jobs", "idem_key", "TEXT NOT NULL DEFAULT ''"},
        std::tuple{"sites", "drained", "INTEGER NOT NULL DEFAULT 0"}}) {
    Stmt info(store->db_,
              fmt::format("SELECT 1 FROM pragma_table_info('{}') WHERE name='{}'", table, column)
                  .c_str());
    if (!info.ok()) return info.error();
    int rc = info.Step();
    if (rc == SQLITE_DONE) {
      CPN_RETURN_IF_ERROR(
          store->Exec(fmt::format("ALTER TABLE {} ADD COLUMN {} {}", table, column, decl))
              .WithContext(path));
    } else if (rc != SQLITE_ROW) {
      return info.error();
    }
  }
  CPN_RETURN_IF_ERROR(
      store
          ->Exec("CREATE UNIQUE INDEX IF NOT EXISTS jobs_by_idem_key ON jobs(tenant, "
                 "idem_key) WHERE idem_key != ''")
          .WithContext(path));
  // Reads go through a second, read-only connection: with WAL they see every
  // committed write and never wait for a commit's disk sync. An in-memory
  // database is private to its connection, so it reads through the one.
  if (path != ":memory:") {
    sqlite3* reader = nullptr;
    rc = sqlite3_open_v2(path.c_str(), &reader, SQLITE_OPEN_READONLY | SQLITE_OPEN_FULLMUTEX,
                         nullptr);
    if (rc != SQLITE_OK) {
      std::string msg = reader != nullptr ? sqlite3_errmsg(reader) : sqlite3_errstr(rc);
      sqlite3_close(reader);
      return Unavailable("cannot open " + path + " for reading: " + msg);
    }
    sqlite3_busy_timeout(reader, 5000);
    store->read_db_ = reader;
    store->read_mu_ = &store->own_read_mu_;
    store->read_stmts_ = &store->own_read_stmts_;
  }
  return store;
}

SqliteStore::~SqliteStore() {
  for (auto& [sql, stmt] : stmts_) sqlite3_finalize(stmt);
  for (auto& [sql, stmt] : own_read_stmts_) sqlite3_finalize(stmt);
  if (read_db_ != db_) sqlite3_close(read_db_);
  sqlite3_close(db_);
}

Status SqliteStore::Exec(const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return Internal("sqlite: " + msg);
  }
  return Status::Ok();
}

Status SqliteStore::PutProvider(const ProviderRecord& r) {
  std::lock_guard lock(mu_);
  Stmt s(db_,
         "INSERT INTO providers(id, name, contact, state, registered_ms) VALUES(?1,?2,?3,?4,?5) "
         "ON CONFLICT(id) DO UPDATE SET name=?2, contact=?3, state=?4, registered_ms=?5");
  if (!s.ok()) return s.error();
  s.Bind(1, r.id);
  s.Bind(2, r.name);
  s.Bind(3, r.contact);
  s.Bind(4, r.state);
  s.Bind(5, r.registered_ms);
  if (s.Step() != SQLITE_DONE) return s.error();
  return Status::Ok();
}

Result<std::optional<ProviderRecord>> SqliteStore::GetProvider(const std::string& id) {
  auto all = ListProviders();
  if (!all.ok()) return all.status();
  for (auto& p : *all) {
    if (p.id == id) return std::optional<ProviderRecord>(std::move(p));
  }
  return std::optional<ProviderRecord>();
}

Result<std::vector<ProviderRecord>> SqliteStore::ListProviders() {
  std::lock_guard lock(*read_mu_);
  Stmt s(read_db_, "SELECT id, name, contact, state, registered_ms FROM providers ORDER BY id");
  if (!s.ok()) return s.error();
  std::vector<ProviderRecord> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    out.push_back({s.Text(0), s.Text(1), s.Text(2), s.Text(3), s.Int(4)});
  }
  if (rc != SQLITE_DONE) return s.error();
  return out;
}

Status SqliteStore::PutSite(const SiteRecord& r) {
  std::lock_guard lock(mu_);
  Stmt s(db_,
         "INSERT INTO sites(id, site, state, registered_ms, last_heartbeat_ms, telemetry, "
         "drained) VALUES(?1,?2,?3,?4,?5,?6,?7) ON CONFLICT(id) DO UPDATE SET site=?2, "
         "state=?3, registered_ms=?4, last_heartbeat_ms=?5, telemetry=?6, drained=?7");
  if (!s.ok()) return s.error();
  s.Bind(1, r.id);
  s.Bind(2, r.site.dump());
  s.Bind(3, r.state);
  s.Bind(4, r.registered_ms);
  s.Bind(5, r.last_heartbeat_ms);
  s.Bind(6, r.telemetry.dump());
  s.Bind(7, int64_t{r.drained ? 1 : 0});
  if (s.Step() != SQLITE_DONE) return s.error();
  return Status::Ok();
}

namespace {
SiteRecord ReadSite(Stmt& s) {
  SiteRecord r;
  r.id = s.Text(0);
  r.site = Json::parse(s.Text(1), nullptr, false);
  r.state = s.Text(2);
  r.registered_ms = s.Int(3);
  r.last_heartbeat_ms = s.Int(4);
  r.telemetry = Json::parse(s.Text(5), nullptr, false);
  r.drained = s.Int(6) != 0;
  return r;
}
}  // namespace

Result<std::optional<SiteRecord>> SqliteStore::GetSite(const std::string& id) {
  std::lock_guard lock(*read_mu_);
  Stmt s(read_db_,
         "SELECT id, site, state, registered_ms, last_heartbeat_ms, telemetry, drained FROM sites "
         "WHERE id=?1");
  if (!s.ok()) return s.error();
  s.Bind(1, id);
  int rc = s.Step();
  if (rc == SQLITE_DONE) return std::optional<SiteRecord>();
  if (rc != SQLITE_ROW) return s.error();
  return std::optional<SiteRecord>(ReadSite(s));
}

Result<std::vector<SiteRecord>> SqliteStore::ListSites() {
  std::lock_guard lock(*read_mu_);
  Stmt s(read_db_,
         "SELECT id, site, state, registered_ms, last_heartbeat_ms, telemetry, drained FROM sites "
         "ORDER BY id");
  if (!s.ok()) return s.error();
  std::vector<SiteRecord> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) out.push_back(ReadSite(s));
  if (rc != SQLITE_DONE) return s.error();
  return out;
}

Status SqliteStore::WriteJobLocked(const JobRecord& j, bool insert) {
  std::string sql = insert ? fmt::format(
                                 "INSERT INTO jobs({}) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,"
                                 "?10,?11,?12,?13,?14,?15,?16,?17,?18)",
                                 kJobColumns)
                           : "UPDATE jobs SET tenant=?2, spec=?3, state=?4, site_id=?5, "
                             "pool_id=?6, decision=?7, ord=?8, cancel_requested=?9, "
                             "attempts=?10, exit_code=?11, reason=?12, created_ms=?13, "
                             "updated_ms=?14, started_ms=?15, finished_ms=?16, "
                             "log_bytes=MAX(log_bytes, ?17), "
                             "idem_key=?18 WHERE id=?1";
  Stmt s(db_, sql, stmts_);
  if (!s.ok()) return s.error();
  s.Bind(1, j.id);
  s.Bind(2, j.tenant);
  s.Bind(3, j.spec.dump());
  s.Bind(4, j.state);
  s.Bind(5, j.site_id);
  s.Bind(6, j.pool_id);
  s.Bind(7, j.decision.dump());
  s.Bind(8, j.order.dump());
  s.Bind(9, int64_t{j.cancel_requested ? 1 : j.preempt_requested ? 2 : 0});
  s.Bind(10, j.attempts);
  if (j.exit_code)
    s.Bind(11, *j.exit_code);
  else
    s.BindNull(11);
  s.Bind(12, j.reason);
  s.Bind(13, j.created_ms);
  s.Bind(14, j.updated_ms);
  s.Bind(15, j.started_ms);
  s.Bind(16, j.finished_ms);
  s.Bind(17, j.log_bytes);
  s.Bind(18, j.idempotency_key);
  int rc = s.Step();
  if (rc == SQLITE_CONSTRAINT) return AlreadyExists("job " + j.id + " already exists");
  if (rc != SQLITE_DONE) return s.error();
  if (!insert && sqlite3_changes(db_) == 0) return NotFound("job " + j.id + " not found");
  return Status::Ok();
}

Status SqliteStore::AppendEventLocked(const JobEvent& e) {
  Stmt s(db_,
         std::string("INSERT INTO job_events(job_id, time_ms, state, reason) VALUES(?1,?2,?3,?4)"),
         stmts_);
  if (!s.ok()) return s.error();
  s.Bind(1, e.job_id);
  s.Bind(2, e.time_ms);
  s.Bind(3, e.state);
  s.Bind(4, e.reason);
  if (s.Step() != SQLITE_DONE) return s.error();
  return Status::Ok();
}

Status SqliteStore::WriteJobs(const std::vector<JobWrite>& writes) {
  if (writes.empty()) return Status::Ok();
  std::lock_guard lock(mu_);
  Transaction tx(db_);
  if (!tx.ok()) return Internal(std::string("sqlite begin: ") + sqlite3_errmsg(db_));
  for (const JobWrite& w : writes) {
    if (!w.job.id.empty()) CPN_RETURN_IF_ERROR(WriteJobLocked(w.job, w.create));
    for (const JobEvent& event : w.events) CPN_RETURN_IF_ERROR(AppendEventLocked(event));
    for (const AuditRecord& a : w.audit) {
      Stmt s(db_,
             "INSERT INTO audit(time_ms, principal, action, object, peer, outcome, detail) "
             "VALUES(?1,?2,?3,?4,?5,?6,?7)",
             stmts_);
      if (!s.ok()) return s.error();
      s.Bind(1, a.time_ms);
      s.Bind(2, a.principal);
      s.Bind(3, a.action);
      s.Bind(4, a.object);
      s.Bind(5, a.peer);
      s.Bind(6, a.outcome);
      s.Bind(7, a.detail);
      if (s.Step() != SQLITE_DONE) return s.error();
    }
    for (const LedgerEntry& e : w.ledger) {
      Stmt s(db_,
             "INSERT INTO ledger(job_id, tenant, provider_id, site_id, pool_id, accelerator, "
             "time_ms, month, card_hours, energy_kwh, carbon_kg, data_gb, price, compute_fen, "
             "transfer_fen, charge_fen, fee_fen, provider_fen) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,"
             "?10,?11,?12,?13,?14,?15,?16,?17,?18) ON CONFLICT(job_id) DO NOTHING",
             stmts_);
      if (!s.ok()) return s.error();
      s.Bind(1, e.job_id);
      s.Bind(2, e.tenant);
      s.Bind(3, e.provider_id);
      s.Bind(4, e.site_id);
      s.Bind(5, e.pool_id);
      s.Bind(6, e.accelerator);
      s.Bind(7, e.time_ms);
      s.Bind(8, e.month);
      s.BindReal(9, e.card_hours);
      s.BindReal(10, e.energy_kwh);
      s.BindReal(11, e.carbon_kg);
      s.BindReal(12, e.data_gb);
      s.BindReal(13, e.price_cny_per_card_hour);
      s.Bind(14, e.compute_fen);
      s.Bind(15, e.transfer_fen);
      s.Bind(16, e.charge_fen);
      s.Bind(17, e.fee_fen);
      s.Bind(18, e.provider_fen);
      if (s.Step() != SQLITE_DONE) return s.error();
    }
  }
  return tx.Commit();
}

Result<std::string> SqliteStore::LastJobId() {
  std::lock_guard lock(*read_mu_);
  Stmt s(read_db_, "SELECT id FROM jobs ORDER BY id DESC LIMIT 1");
  if (!s.ok()) return s.error();
  int rc = s.Step();
  if (rc == SQLITE_ROW) return s.Text(0);
  if (rc != SQLITE_DONE) return s.error();
  return std::string();
}

Result<std::vector<std::pair<std::string, std::string>>> SqliteStore::ListIdempotencyKeys() {
  std::lock_guard lock(*read_mu_);
  Stmt s(read_db_, "SELECT tenant, idem_key FROM jobs WHERE idem_key != ''");
  if (!s.ok()) return s.error();
  std::vector<std::pair<std::string, std::string>> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) out.emplace_back(s.Text(0), s.Text(1));
  if (rc != SQLITE_DONE) return s.error();
  return out;
}

Status SqliteStore::PutQuota(const std::string& tenant, const Json& quota) {
  std::lock_guard lock(mu_);
  Stmt s(db_,
         "INSERT INTO quotas(tenant, quota) VALUES(?1,?2) ON CONFLICT(tenant) DO UPDATE SET "
         "quota=?2");
  if (!s.ok()) return s.error();
  s.Bind(1, tenant);
  s.Bind(2, quota.dump());
  if (s.Step() != SQLITE_DONE) return s.error();
  return Status::Ok();
}

Result<std::map<std::string, Json>> SqliteStore::ListQuotas() {
  std::lock_guard lock(*read_mu_);
  Stmt s(read_db_, "SELECT tenant, quota FROM quotas");
  if (!s.ok()) return s.error();
  std::map<std::string, Json> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) out[s.Text(0)] = Json::parse(s.Text(1), nullptr, false);
  if (rc != SQLITE_DONE) return s.error();
  return out;
}

Result<std::vector<LedgerEntry>> SqliteStore::ListLedger(const LedgerFilter& f) {
  std::lock_guard lock(*read_mu_);
  Stmt s(read_db_,
         "SELECT seq, job_id, tenant, provider_id, site_id, pool_id, accelerator, time_ms, month, "
         "card_hours, energy_kwh, carbon_kg, data_gb, price, compute_fen, transfer_fen, "
         "charge_fen, fee_fen, provider_fen FROM ledger WHERE (?1 = '' OR tenant = ?1) AND "
         "(?2 = '' OR provider_id = ?2) AND (?3 = '' OR month = ?3) ORDER BY seq");
  if (!s.ok()) return s.error();
  s.Bind(1, f.tenant);
  s.Bind(2, f.provider_id);
  s.Bind(3, f.month);
  std::vector<LedgerEntry> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    LedgerEntry e;
    e.seq = s.Int(0);
    e.job_id = s.Text(1);
    e.tenant = s.Text(2);
    e.provider_id = s.Text(3);
    e.site_id = s.Text(4);
    e.pool_id = s.Text(5);
    e.accelerator = s.Text(6);
    e.time_ms = s.Int(7);
    e.month = s.Text(8);
    e.card_hours = s.Real(9);
    e.energy_kwh = s.Real(10);
    e.carbon_kg = s.Real(11);
    e.data_gb = s.Real(12);
    e.price_cny_per_card_hour = s.Real(13);
    e.compute_fen = s.Int(14);
    e.transfer_fen = s.Int(15);
    e.charge_fen = s.Int(16);
    e.fee_fen = s.Int(17);
    e.provider_fen = s.Int(18);
    out.push_back(std::move(e));
  }
  if (rc != SQLITE_DONE) return s.error();
  return out;
}

Status SqliteStore::PutToken(const TokenRecord& t) {
  std::lock_guard lock(mu_);
  Stmt s(db_,
         "INSERT INTO tokens(id, hash, role, subject, user, created_ms, expires_ms, revoked_ms) "
         "VALUES(?1,?2,?3,?4,?5,?6,?7,?8) ON CONFLICT(id) DO UPDATE SET revoked_ms=?8, "
         "expires_ms=?7");
  if (!s.ok()) return s.error();
  s.Bind(1, t.id);
  s.Bind(2, t.hash);
  s.Bind(3, t.role);
  s.Bind(4, t.subject);
  s.Bind(5, t.user);
  s.Bind(6, t.created_ms);
  s.Bind(7, t.expires_ms);
  s.Bind(8, t.revoked_ms);
  if (s.Step() != SQLITE_DONE) return s.error();
  return Status::Ok();
}

Result<std::vector<TokenRecord>> SqliteStore::ListTokens() {
  std::lock_guard lock(*read_mu_);
  Stmt s(read_db_,
         "SELECT id, hash, role, subject, user, created_ms, expires_ms, revoked_ms FROM tokens "
         "ORDER BY id");
  if (!s.ok()) return s.error();
  std::vector<TokenRecord> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    out.push_back(
        {s.Text(0), s.Text(1), s.Text(2), s.Text(3), s.Text(4), s.Int(5), s.Int(6), s.Int(7)});
  }
  if (rc != SQLITE_DONE) return s.error();
  return out;
}

Result<std::vector<AuditRecord>> SqliteStore::ListAudit(const AuditFilter& f) {
  std::lock_guard lock(*read_mu_);
  Stmt s(read_db_,
         "SELECT seq, time_ms, principal, action, object, peer, outcome, detail FROM audit "
         "WHERE seq > ?1 AND (?2 = '' OR principal = ?2) AND (?3 = '' OR action = ?3) AND "
         "(?4 = '' OR object = ?4) ORDER BY seq LIMIT ?5");
  if (!s.ok()) return s.error();
  s.Bind(1, f.after_seq);
  s.Bind(2, f.principal);
  s.Bind(3, f.action);
  s.Bind(4, f.object);
  s.Bind(5, f.limit);
  std::vector<AuditRecord> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    out.push_back(
        {s.Int(0), s.Int(1), s.Text(2), s.Text(3), s.Text(4), s.Text(5), s.Text(6), s.Text(7)});
  }
  if (rc != SQLITE_DONE) return s.error();
  return out;
}

Result<std::vector<JobRecord>> SqliteStore::QueryJobsLocked(bool reader, const std::string& where,
                                                            const std::vector<std::string>& args,
                                                            int64_t limit) {
  std::string sql = fmt::format("SELECT {} FROM jobs {} ORDER BY id LIMIT ?{}", kJobColumns, where,
                                args.size() + 1);
  Stmt s(reader ? read_db_ : db_, sql, reader ? *read_stmts_ : stmts_);
  if (!s.ok()) return s.error();
  for (size_t i = 0; i < args.size(); ++i) s.Bind(static_cast<int>(i + 1), args[i]);
  s.Bind(static_cast<int>(args.size() + 1), limit);
  std::vector<JobRecord> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) out.push_back(ReadJob(s));
  if (rc != SQLITE_DONE) return s.error();
  return out;
}

Result<std::optional<JobRecord>> SqliteStore::FindJobByIdempotencyKey(const std::string& tenant,
                                                                      const std::string& key) {
  std::lock_guard lock(*read_mu_);
  // "idem_key != ''" lets SQLite use the partial index jobs_by_idem_key.
  auto r =
      QueryJobsLocked(true, "WHERE tenant=?1 AND idem_key=?2 AND idem_key != ''", {tenant, key}, 1);
  if (!r.ok()) return r.status();
  if (r->empty()) return std::optional<JobRecord>();
  return std::optional<JobRecord>(std::move(r->front()));
}

Result<std::optional<JobRecord>> SqliteStore::GetJob(const std::string& id) {
  std::lock_guard lock(*read_mu_);
  auto r = QueryJobsLocked(true, "WHERE id=?1", {id}, 1);
  if (!r.ok()) return r.status();
  if (r->empty()) return std::optional<JobRecord>();
  return std::optional<JobRecord>(std::move(r->front()));
}

Result<std::vector<JobRecord>> SqliteStore::ListJobs(const JobFilter& f) {
  std::lock_guard lock(*read_mu_);
  std::string where = "WHERE id > ?1";
  std::vector<std::string> args = {f.after_id};
  if (!f.tenant.empty()) {
    args.push_back(f.tenant);
    where += fmt::format(" AND tenant = ?{}", args.size());
  }
  if (!f.state.empty()) {
    args.push_back(f.state);
    where += fmt::format(" AND state = ?{}", args.size());
  }
  return QueryJobsLocked(true, where, args, f.limit);
}

Result<std::vector<JobRecord>> SqliteStore::ListActiveJobs() {
  std::lock_guard lock(mu_);
  return QueryJobsLocked(false, "WHERE state NOT IN ('succeeded','failed','cancelled')", {},
                         std::numeric_limits<int64_t>::max());
}

Result<std::map<std::string, int64_t>> SqliteStore::CountJobsByState() {
  std::lock_guard lock(*read_mu_);
  Stmt s(read_db_, "SELECT state, COUNT(*) FROM jobs GROUP BY state");
  if (!s.ok()) return s.error();
  std::map<std::string, int64_t> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) out[s.Text(0)] = s.Int(1);
  if (rc != SQLITE_DONE) return s.error();
  return out;
}

Result<std::vector<JobRecord>> SqliteStore::ListJobsFinishedSince(int64_t ms) {
  std::lock_guard lock(*read_mu_);
  return QueryJobsLocked(true, "WHERE finished_ms >= ?1", {std::to_string(ms)},
                         std::numeric_limits<int64_t>::max());
}

Result<std::vector<JobEvent>> SqliteStore::ListEvents(const std::string& job_id) {
  std::lock_guard lock(*read_mu_);
  Stmt s(read_db_,
         "SELECT seq, job_id, time_ms, state, reason FROM job_events WHERE job_id=?1 "
         "ORDER BY seq");
  if (!s.ok()) return s.error();
  s.Bind(1, job_id);
  std::vector<JobEvent> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    out.push_back({s.Int(0), s.Text(1), s.Int(2), s.Text(3), s.Text(4)});
  }
  if (rc != SQLITE_DONE) return s.error();
  return out;
}

Result<int64_t> SqliteStore::AppendLog(const std::string& job_id, int64_t offset,
                                       const std::string& data) {
  std::lock_guard lock(mu_);
  Transaction tx(db_);
  if (!tx.ok()) return Internal(std::string("sqlite begin: ") + sqlite3_errmsg(db_));
  int64_t size = 0;
  {
    Stmt s(db_, "SELECT log_bytes FROM jobs WHERE id=?1");
    if (!s.ok()) return s.error();
    s.Bind(1, job_id);
    int rc = s.Step();
    if (rc == SQLITE_DONE) return NotFound("job " + job_id + " not found");
    if (rc != SQLITE_ROW) return s.error();
    size = s.Int(0);
  }
  if (offset > size) {
    return FailedPrecondition(
        fmt::format("log offset {} is past the end of the log ({} bytes)", offset, size));
  }
  int64_t skip = size - offset;
  if (skip >= static_cast<int64_t>(data.size())) return size;  // already have all of it
  std::string fresh = data.substr(static_cast<size_t>(skip));
  {
    Stmt s(db_, "INSERT INTO job_logs(job_id, offset, data) VALUES(?1,?2,?3)");
    if (!s.ok()) return s.error();
    s.Bind(1, job_id);
    s.Bind(2, size);
    s.BindBlob(3, fresh);
    if (s.Step() != SQLITE_DONE) return s.error();
  }
  int64_t new_size = size + static_cast<int64_t>(fresh.size());
  {
    Stmt s(db_, "UPDATE jobs SET log_bytes=?2 WHERE id=?1");
    if (!s.ok()) return s.error();
    s.Bind(1, job_id);
    s.Bind(2, new_size);
    if (s.Step() != SQLITE_DONE) return s.error();
  }
  CPN_RETURN_IF_ERROR(tx.Commit());
  return new_size;
}

Result<std::string> SqliteStore::ReadLog(const std::string& job_id, int64_t offset,
                                         int64_t max_bytes) {
  std::lock_guard lock(*read_mu_);
  // The chunk holding `offset` and the ones after it.
  Stmt s(read_db_,
         "SELECT offset, data FROM job_logs WHERE job_id=?1 AND offset + length(data) > ?2 "
         "ORDER BY offset");
  if (!s.ok()) return s.error();
  s.Bind(1, job_id);
  s.Bind(2, offset);
  std::string out;
  int rc;
  while (static_cast<int64_t>(out.size()) < max_bytes && (rc = s.Step()) == SQLITE_ROW) {
    int64_t start = s.Int(0);
    std::string data = s.Blob(1);
    size_t from = offset > start ? static_cast<size_t>(offset - start) : 0;
    out += data.substr(from);
  }
  if (static_cast<int64_t>(out.size()) > max_bytes) out.resize(static_cast<size_t>(max_bytes));
  return out;
}

}  // namespace cpn
