// Agent: the cpn process at a site, between the platform and the site's
// machines.
//
// It registers its site from its config, sends a heartbeat with telemetry
// (free and busy cards per pool, utilisation, estimated power draw) every
// period, starts the jobs the server assigns in the heartbeat reply through
// its Executor with card slots handed over in CPN_CARD_SLOTS (and the vendor's
// own variable), kills the jobs the server cancels, reports every state change
// and exit code, and ships each job's log. A report or log upload that fails
// stays queued and is retried, with exponential backoff while the server is
// unreachable, so a server restart loses nothing. Datasets other sites wait
// for are copied to them (cpn transfer) on threads of their own, one per
// staging, and reported when done; everything else is single-threaded: Run()
// owns all state.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "src/agent/agent_config.h"
#include "src/core/catalog.h"
#include "src/core/clock.h"
#include "src/exec/executor.h"
#include "src/net/http_client.h"

namespace cpn {

class Agent {
 public:
  Agent(AgentConfig config, const Catalog& catalog, Executor& executor, const Clock& clock,
        net::HttpClient client);
  ~Agent();

  // One cycle of register/heartbeat/start/poll/ship/report. Returns the delay
  // in ms before the next cycle (the heartbeat period, or a backoff).
  int64_t Step();
  // Cycles until `stop` is set.
  void Run(const std::atomic<bool>& stop);

  size_t active_jobs() const { return jobs_.size(); }
  // Where this site's transfer service listens; sent in every heartbeat so
  // `cpn transfer FILE SITE:PATH` can find it.
  void SetTransferEndpoint(std::string address, int port, bool tls = false) {
    transfer_address_ = std::move(address);
    transfer_port_ = port;
    transfer_tls_ = tls;
  }

 private:
  struct Job {
    std::string pool_id;
    std::vector<int> slots;
    std::string log_path;
    int64_t log_shipped = 0;
    bool started = false;  // handed to the executor
    bool running = false;  // the executor says it runs (or ran)
    bool running_reported = false;
    bool finished = false;
    bool cancel_requested = false;
    std::string final_state;
    std::optional<int64_t> exit_code;
    std::string reason;
  };

  Status Register();
  // Takes back the jobs an earlier run of this agent left with the batch
  // system, so they are followed (and listed as held) instead of placed again.
  void RecoverJobs();
  Status Heartbeat();
  void StartJob(const Json& assignment);
  void PollJobs();
  Status ShipLog(const std::string& id, Job& job, bool* complete);
  Status Report(const std::string& id, const std::string& state, const Job& job);
  Status Flush();
  Json Telemetry() const;
  std::vector<int> TakeSlots(const std::string& pool_id, int64_t cards);
  void ReleaseSlots(const std::string& pool_id, const std::vector<int>& slots);

  // A dataset being copied to another site for one of its jobs.
  struct Staging {
    std::thread worker;
    std::mutex mu;
    bool done = false;  // the worker has finished; result and figures are set
    Json result;        // the report to send
  };
  void StartStaging(const Json& order);
  void ReportStagings();
  std::map<std::string, std::unique_ptr<Staging>> stagings_;  // by job id

  AgentConfig config_;
  std::string transfer_address_;
  int transfer_port_ = 0;
  bool transfer_tls_ = false;
  const Catalog& catalog_;
  Executor& executor_;
  const Clock& clock_;
  net::HttpClient client_;
  std::string site_path_;  // /v1/sites/{node}/{provider}/{site}
  bool registered_ = false;
  bool recovered_ = false;
  int64_t backoff_ms_ = 0;
  std::map<std::string, Job> jobs_;
  std::map<std::string, std::vector<bool>> slot_used_;
};

}  // namespace cpn
