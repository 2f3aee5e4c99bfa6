#include "src/agent/agent_config.h"

#include <gtest/gtest.h>

#include "src/core/data_dir.h"
#include "src/testing/fixtures.h"

namespace cpn {
namespace {

const char* kConfig = R"(server = "http://127.0.0.1:9"
heartbeat_s = 0.5
work_dir = "/tmp/w"

[site]
id = "cpn:cn.nx/acme/nx-1"
name = "west"
area = "nx"
jurisdiction = "CN-NX"
pue = 1.1
electricity_cny_per_kwh = 0.36
carbon_kg_per_kwh = 0.6
green_share = 0.5

[[pools]]
name = "gpu"
accelerator = "test-gpu"
cards = 16
price_cny_per_card_hour = 5
)";

TEST(AgentConfig, ParsesASite) {
  auto c = ParseAgentConfig(kConfig, "nx.toml", testing::TestCatalog());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->heartbeat_ms, 500);
  EXPECT_EQ(c->site.pools.at(0).id, "cpn:cn.nx/acme/nx-1/gpu");
  EXPECT_EQ(c->site.pools.at(0).cards, 16);
  // Round trip through the writer.
  auto again = ParseAgentConfig(AgentConfigToToml(c->site, c->server_url, c->work_dir, 500),
                                "gen.toml", testing::TestCatalog());
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(SiteToJson(again->site), SiteToJson(c->site));
}

TEST(AgentConfig, ErrorsCarryFileAndLine) {
  struct Case {
    std::string from, to, expect;
  };
  for (const auto& c : std::vector<Case>{
           {"cards = 16", "cards = -2", "nx.toml:18: pools[0].cards: expected an integer"},
           {"pue = 1.1", "pue = 0.5", "nx.toml:10: site.pue: expected a number between 1"},
           {"accelerator = \"test-gpu\"", "accelerator = \"tpu\"",
            "nx.toml:17: pools[0].accelerator: unknown accelerator 'tpu'"},
           {"jurisdiction = \"CN-NX\"", "jurisdiction = \"Ningxia\"",
            "nx.toml:9: site.jurisdiction: 'Ningxia' is not an ISO 3166-2 code"},
           {"id = \"cpn:cn.nx/acme/nx-1\"", "id = \"nx-1\"", "nx.toml:6: site.id: 'nx-1' is not"},
           {"heartbeat_s = 0.5", "heartbeat_s = 0.5\ncolour = 1",
            "nx.toml:3: colour: unknown field"},
       }) {
    std::string text = kConfig;
    text.replace(text.find(c.from), c.from.size(), c.to);
    auto r = ParseAgentConfig(text, "nx.toml", testing::TestCatalog());
    ASSERT_FALSE(r.ok()) << c.to;
    EXPECT_NE(r.status().message().find(c.expect), std::string::npos) << r.status().message();
  }
}

}  // namespace
}  // namespace cpn

namespace cpn {
namespace {

TEST(AgentConfig, ShippedSampleSiteMatchesTheTopology) {
  auto catalog = Catalog::LoadDefault();
  ASSERT_TRUE(catalog.ok());
  auto c = LoadAgentConfig(std::string(CPN_SOURCE_DATA_DIR) + "/sites/zw-01.toml", *catalog);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto topo = Topology::LoadDefault(*catalog);
  ASSERT_TRUE(topo.ok());
  const Site* zw = topo->FindSite(c->site.id);
  ASSERT_NE(zw, nullptr);
  EXPECT_EQ(SiteToJson(c->site), SiteToJson(*zw));
}

TEST(AgentConfig, SlurmSitesNamePartitionsInsteadOfCardCounts) {
  auto catalog = Catalog::LoadDefault();
  ASSERT_TRUE(catalog.ok());
  auto c =
      LoadAgentConfig(std::string(CPN_SOURCE_DATA_DIR) + "/sites/slurm-example.toml", *catalog);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->executor, "slurm");
  EXPECT_EQ(c->partition_by_pool.at("cpn:cn.nx/zwcloud/zw-slurm/a800"), "gpu");
  auto text = ReadFile(std::string(CPN_SOURCE_DATA_DIR) + "/sites/slurm-example.toml");
  ASSERT_TRUE(text.ok());
  std::string no_partition = *text;
  no_partition.replace(no_partition.find("partition = \"gpu\"\n"), 18, "");
  auto r = ParseAgentConfig(no_partition, "s.toml", *catalog);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("pools[0].partition"), std::string::npos)
      << r.status().message();
  std::string bad = *text;
  bad.replace(bad.find("\nexecutor = \"slurm\"") + 1, 18, "executor = \"pbs\"");
  r = ParseAgentConfig(bad, "s.toml", *catalog);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("s.toml:10: executor: expected \"local\" or \"slurm\""),
            std::string::npos)
      << r.status().message();
}

}  // namespace
}  // namespace cpn
