#include "src/core/topology.h"

#include <gtest/gtest.h>

#include <set>

#include "src/testing/fixtures.h"

namespace cpn {
namespace {

TEST(Topology, ShippedTopologyHasEveryHubAndEasternSites) {
  auto c = Catalog::LoadDefault();
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto t = Topology::LoadDefault(*c);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  std::set<std::string> areas, cities;
  for (const auto& s : t->sites()) {
    areas.insert(s.area);
    cities.insert(s.city);
    EXPECT_FALSE(s.pools.empty()) << s.id;
  }
  EXPECT_EQ(areas, (std::set<std::string>{"jjj", "yrd", "gba", "cy", "nm", "gz", "gs", "nx"}));
  for (const char* city : {"Beijing", "Shanghai", "Shenzhen", "Zhongwei", "Qingyang"}) {
    EXPECT_EQ(cities.count(city), 1u) << city;
  }
  const Site* zw = t->FindSite("cpn:cn.nx/zwcloud/zw-01");
  ASSERT_NE(zw, nullptr);
  EXPECT_DOUBLE_EQ(zw->pue, 1.1);
  EXPECT_DOUBLE_EQ(zw->electricity_cny_per_kwh, 0.36);
  EXPECT_EQ(zw->country(), "CN");
}

TEST(Topology, LinkLookupIsSymmetricWithFallbacks) {
  auto c = testing::TestCatalog();
  auto t = testing::TestTopology(c);
  EXPECT_DOUBLE_EQ(t.LinkBetween("nx", "jjj").cny_per_gb, 0.05);
  EXPECT_DOUBLE_EQ(t.LinkBetween("jjj", "nx").rtt_ms, 20);
  EXPECT_DOUBLE_EQ(t.LinkBetween("nx", "nx").bandwidth_gbps, 100);
  EXPECT_DOUBLE_EQ(t.LinkBetween("jjj", "sg").bandwidth_gbps, 1);
}

TEST(Topology, SiteValidationNamesTheField) {
  auto c = testing::TestCatalog();
  Json site = SiteToJson(testing::TestTopology(c).sites()[0]);
  site["pools"][0]["accelerator"] = "warp-drive";
  auto s = SiteFromJson(site, "site", c);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("site.pools[0].accelerator: unknown accelerator"),
            std::string::npos)
      << s.status().message();
  site = SiteToJson(testing::TestTopology(c).sites()[0]);
  site["pools"][0]["id"] = "cpn:cn.bj/other/x-1/gpu";
  EXPECT_FALSE(SiteFromJson(site, "site", c).ok());
  site = SiteToJson(testing::TestTopology(c).sites()[0]);
  site["jurisdiction"] = "Beijing";
  s = SiteFromJson(site, "site", c);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("ISO 3166-2"), std::string::npos);
  site = SiteToJson(testing::TestTopology(c).sites()[0]);
  site["pools"][0]["cards"] = -1;
  EXPECT_FALSE(SiteFromJson(site, "site", c).ok());
}

}  // namespace
}  // namespace cpn
