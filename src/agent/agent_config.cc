#include "src/agent/agent_config.h"

#include <fmt/format.h>

#include "src/core/data_dir.h"
#include "src/core/ids.h"
#include "src/core/toml.h"

namespace cpn {

Result<AgentConfig> ParseAgentConfig(const std::string& text, const std::string& file,
                                     const Catalog& catalog) {
  auto doc = ParseToml(text, file);
  if (!doc.ok()) return doc.status();
  AgentConfig c;
  FieldReader r(doc->root, "");
  double heartbeat_s = 1.0;
  r.String("server", &c.server_url, false);
  r.String("token_file", &c.token_file, false);
  r.String("server_tls_ca", &c.server_tls_ca, false);
  r.String("tls_cert", &c.tls_cert, false);
  r.String("tls_key", &c.tls_key, false);
  if (r.ok() && c.tls_cert.empty() != c.tls_key.empty()) {
    r.FailField("tls_key", "tls_cert and tls_key go together");
  }
  r.Number("heartbeat_s", &heartbeat_s, 0.05, 600, false);
  r.String("work_dir", &c.work_dir);
  r.String("executor", &c.executor, false);
  r.String("data_root", &c.data_root, false);
  r.String("transfer_listen", &c.transfer_listen, false);
  r.Int("transfer_port", &c.transfer_port, 0, 65535, false);
  r.String("transfer_tls_cert", &c.transfer_tls_cert, false);
  r.String("transfer_tls_key", &c.transfer_tls_key, false);
  r.String("transfer_tls_ca", &c.transfer_tls_ca, false);
  if (r.ok() && c.transfer_tls_cert.empty() != c.transfer_tls_key.empty()) {
    r.FailField("transfer_tls_key", "transfer_tls_cert and transfer_tls_key go together");
  }
  if (r.ok() && c.executor != "local" && c.executor != "slurm") {
    r.FailField("executor", "expected \"local\" or \"slurm\", got \"" + c.executor + "\"");
  }
  const Json* site = r.Object("site");
  const Json* pools = r.Array("pools");
  Status s = r.Finish();
  if (!s.ok()) return doc->Locate(s, file);
  c.heartbeat_ms = static_cast<int64_t>(heartbeat_s * 1000);

  std::string site_id;
  if (site->contains("id") && (*site)["id"].is_string()) site_id = (*site)["id"];
  Json site_json = *site;
  site_json["pools"] = Json::array();
  for (size_t i = 0; i < pools->size(); ++i) {
    FieldReader pr((*pools)[i], fmt::format("pools[{}]", i));
    std::string name, accelerator;
    int64_t cards = 1;
    double price = 0;
    std::string partition;
    pr.String("name", &name);
    pr.String("accelerator", &accelerator);
    pr.String("partition", &partition, c.executor == "slurm");
    // Under Slurm the partition says how many cards there are.
    pr.Int("cards", &cards, 1, 1'000'000, c.executor != "slurm");
    pr.Number("price_cny_per_card_hour", &price, 0, 10'000);
    if (pr.ok() && !IsValidLabel(name)) pr.FailField("name", "expected 1-63 of [a-z0-9-]");
    if (pr.ok() && catalog.Find(accelerator) == nullptr) {
      pr.FailField("accelerator", "unknown accelerator '" + accelerator + "' (see `cpn catalog`)");
    }
    s = pr.Finish();
    if (!s.ok()) return doc->Locate(s, file);
    if (!partition.empty()) c.partition_by_pool[site_id + "/" + name] = partition;
    site_json["pools"].push_back({{"id", site_id + "/" + name},
                                  {"accelerator", accelerator},
                                  {"cards", cards},
                                  {"price_cny_per_card_hour", price}});
  }
  auto parsed = SiteFromJson(site_json, "site", catalog);
  if (!parsed.ok()) return doc->Locate(parsed.status(), file);
  if (parsed->pools.empty()) {
    return doc->Locate(InvalidArgument("pools: a site needs at least one [[pools]] table"), file);
  }
  c.site = std::move(parsed).value();
  return c;
}

Result<AgentConfig> LoadAgentConfig(const std::string& path, const Catalog& catalog) {
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  return ParseAgentConfig(*text, path, catalog);
}

std::string AgentConfigToToml(const Site& s, const std::string& server_url,
                              const std::string& work_dir, int64_t heartbeat_ms) {
  std::string out = "# cpn agent configuration for " + s.name + "\n";
  if (!server_url.empty()) out += fmt::format("server = \"{}\"\n", server_url);
  out += fmt::format("heartbeat_s = {}\nwork_dir = \"{}\"\n\n", heartbeat_ms / 1000.0, work_dir);
  out += fmt::format(
      "[site]\nid = \"{}\"\nname = \"{}\"\ncity = \"{}\"\narea = \"{}\"\njurisdiction = \"{}\"\n"
      "pue = {}\nelectricity_cny_per_kwh = {}\ncarbon_kg_per_kwh = {}\ngreen_share = {}\n",
      s.id, s.name, s.city, s.area, s.jurisdiction, s.pue, s.electricity_cny_per_kwh,
      s.carbon_kg_per_kwh, s.green_share);
  for (const auto& p : s.pools) {
    out += fmt::format(
        "\n[[pools]]\nname = \"{}\"\naccelerator = \"{}\"\ncards = {}\n"
        "price_cny_per_card_hour = {}\n",
        p.id.substr(p.id.rfind('/') + 1), p.accelerator, p.cards, p.price_cny_per_card_hour);
  }
  return out;
}

}  // namespace cpn
