#include "src/core/ids.h"

#include <gtest/gtest.h>

namespace cpn {
namespace {

TEST(ResourceId, ParsesEveryLevel) {
  auto pool = ParseResourceId("cpn:cn.nx/zwcloud/zw-01/ascend-910b");
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  EXPECT_EQ(pool->node, "cn.nx");
  EXPECT_EQ(pool->provider, "zwcloud");
  EXPECT_EQ(pool->site, "zw-01");
  EXPECT_EQ(pool->pool, "ascend-910b");
  EXPECT_TRUE(pool->is_pool());
  EXPECT_EQ(pool->SiteId(), "cpn:cn.nx/zwcloud/zw-01");
  EXPECT_EQ(pool->ToString(), "cpn:cn.nx/zwcloud/zw-01/ascend-910b");
  auto provider = ParseResourceId("cpn:cn/acme");
  ASSERT_TRUE(provider.ok());
  EXPECT_TRUE(provider->is_provider());
}

TEST(ResourceId, RejectsMalformedIdsWithTheReason) {
  for (const char* bad : {"cn.nx/a/b", "cpn:", "cpn:cn", "cpn:CN/a/b", "cpn:cn/a/b/c/d",
                          "cpn:cn/a//b", "cpn:cn/-a/b", "cpn:cn/a/b c", "cpn:cn/../b"}) {
    auto id = ParseResourceId(bad, "site");
    EXPECT_FALSE(id.ok()) << bad;
    EXPECT_EQ(id.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(id.status().message().find("site: '"), std::string::npos) << id.status().message();
  }
  EXPECT_FALSE(ParseResourceId(std::string(300, 'a')).ok());
}

TEST(ResourceId, LevelChecks) {
  EXPECT_TRUE(ValidateSiteId("cpn:cn.bj/acme/bj-1").ok());
  EXPECT_FALSE(ValidateSiteId("cpn:cn.bj/acme/bj-1/gpu").ok());
  EXPECT_TRUE(ValidatePoolId("cpn:cn.bj/acme/bj-1/gpu").ok());
  EXPECT_FALSE(ValidatePoolId("cpn:cn.bj/acme").ok());
}

TEST(JobId, Format) {
  EXPECT_TRUE(IsValidJobId("job-0123456789ab"));
  EXPECT_FALSE(IsValidJobId("job-0123456789AB"));
  EXPECT_FALSE(IsValidJobId("job-123"));
  EXPECT_FALSE(IsValidJobId("../etc/passwd"));
}

}  // namespace
}  // namespace cpn
