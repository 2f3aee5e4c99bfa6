// AgentConfig: a site agent's configuration file (TOML, see data/sites/).
//
// It names the server, the heartbeat period, where job work and logs go, and
// the site the agent stands for: its id, location, energy figures and pools.
// Every error names the file and line ("zw-01.toml:12: pools[0].cards: ...").
#pragma once

#include <map>
#include <string>

#include "src/core/catalog.h"
#include "src/core/topology.h"

namespace cpn {

struct AgentConfig {
  std::string server_url;  // may be empty: then --server must give it
  int64_t heartbeat_ms = 1000;
  std::string work_dir;
  // "local" (processes on this machine) or "slurm" (batch jobs; each pool
  // names its partition, and its card count comes from Slurm).
  std::string executor = "local";
  std::map<std::string, std::string> partition_by_pool;  // pool id -> Slurm partition
  // Datasets: the agent receives transfers (`cpn transfer`) into data_root
  // on transfer_listen:transfer_port and tells the platform where, in its
  // telemetry. No data_root: no transfer service.
  std::string data_root;
  std::string transfer_listen = "0.0.0.0";
  int64_t transfer_port = 7070;
  // TLS for the transfer service (both or neither), and the CA certificates
  // this agent checks other sites' transfer services against when it stages
  // data to them (empty: the system's CAs).
  std::string transfer_tls_cert, transfer_tls_key, transfer_tls_ca;
  // The site's API token (issued for role "site" and this site's id), read
  // from this file; empty: none (a server with --auth off).
  std::string token_file;
  // For a server on https: the CA to check it with (empty: the system's),
  // and this site's client certificate and key (its CN the site id) for a
  // server that asks for one.
  std::string server_tls_ca, tls_cert, tls_key;
  Site site;
};

Result<AgentConfig> ParseAgentConfig(const std::string& text, const std::string& file,
                                     const Catalog& catalog);
Result<AgentConfig> LoadAgentConfig(const std::string& path, const Catalog& catalog);
// Writes a config for `site` (used by `cpn dev` and as documentation).
std::string AgentConfigToToml(const Site& site, const std::string& server_url,
                              const std::string& work_dir, int64_t heartbeat_ms);

}  // namespace cpn
