#include "src/core/ids.h"

#include <fmt/format.h>
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
  EXPECT_EQ(JobIdNumber("job-0000000100ff"), 0x100ffu);
  EXPECT_FALSE(JobIdNumber("job-xyz").has_value());
}

TEST(JobIdSequence, IncreasesWithinASecondAndFollowsTheClock) {
  JobIdSequence ids;
  const int64_t t = 1'790'000'000'000;  // ms
  EXPECT_EQ(ids.Next(t), fmt::format("job-{:012x}", (t / 1000) << 16));
  EXPECT_EQ(ids.Next(t + 999), fmt::format("job-{:012x}", ((t / 1000) << 16) + 1));
  EXPECT_EQ(ids.Next(t + 1000), fmt::format("job-{:012x}", (t / 1000 + 1) << 16));
  std::string previous = ids.Next(t + 1000);
  for (int i = 0; i < 70'000; ++i) {  // more than a second's count
    std::string next = ids.Next(t + 1000);
    ASSERT_TRUE(IsValidJobId(next));
    ASSERT_LT(previous, next);
    previous = next;
  }
}

TEST(JobIdSequence, NeverRepeatsAStoredIdWhenTheClockGoesBack) {
  const uint64_t stored = *JobIdNumber("job-6a0000000005");
  JobIdSequence ids(stored);
  EXPECT_EQ(ids.Next(0), "job-6a0000000006");
  EXPECT_EQ(ids.Next(1000), "job-6a0000000007");
  // Within a few of the 48-bit top: starts again from the clock, still valid.
  JobIdSequence near_top((uint64_t{1} << 48) - 1);
  EXPECT_EQ(near_top.Next(2000), "job-000000020000");
}

}  // namespace
}  // namespace cpn
