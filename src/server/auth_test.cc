// Tokens: issued once, stored only as hashes, expire and revoke; the rate
// limiter's bucket.
#include "src/server/auth.h"

#include <gtest/gtest.h>

#include "src/store/sqlite_store.h"

namespace cpn {
namespace {

class AuthTest : public ::testing::Test {
 protected:
  AuthTest() : store_(std::move(SqliteStore::Open(":memory:")).value()) {}
  FakeClock clock_;
  std::unique_ptr<SqliteStore> store_;
};

TEST_F(AuthTest, ATokenIsShownOnceAndStoredOnlyAsItsHash) {
  Authenticator auth(*store_, clock_);
  ASSERT_TRUE(auth.Load().ok());
  auto issued = auth.Issue(Role::kTenant, "bj-health", "alice", 0);
  ASSERT_TRUE(issued.ok()) << issued.status().ToString();
  EXPECT_EQ(issued->secret.size(), 4u + 64u);
  EXPECT_EQ(issued->secret.substr(0, 4), "cpn_");
  auto stored = store_->ListTokens();
  ASSERT_TRUE(stored.ok());
  ASSERT_EQ(stored->size(), 1u);
  EXPECT_EQ((*stored)[0].hash, Sha256Hex(issued->secret));
  EXPECT_EQ((*stored)[0].hash.find(issued->secret.substr(4)), std::string::npos);
  EXPECT_EQ((*stored)[0].id, "tok-" + (*stored)[0].hash.substr(0, 12));
  auto who = auth.Verify("Bearer " + issued->secret);
  ASSERT_TRUE(who.ok()) << who.status().ToString();
  EXPECT_EQ(who->role, Role::kTenant);
  EXPECT_EQ(who->subject, "bj-health");
  EXPECT_EQ(who->Name(), "tenant:bj-health/alice");
  // A second authenticator over the same store (a restarted server) knows it.
  Authenticator again(*store_, clock_);
  ASSERT_TRUE(again.Load().ok());
  EXPECT_TRUE(again.Verify("Bearer " + issued->secret).ok());
}

TEST_F(AuthTest, BadExpiredAndRevokedTokensAreRefusedAlike) {
  Authenticator auth(*store_, clock_);
  auto short_lived = auth.Issue(Role::kSite, "cpn:cn.nx/zwcloud/zw-01", "agent", 60'000);
  auto revoked = auth.Issue(Role::kProvider, "cpn:cn.nx/zwcloud", "", 0);
  ASSERT_TRUE(short_lived.ok() && revoked.ok());
  EXPECT_EQ(auth.Verify("").status().code(), StatusCode::kUnauthenticated);
  EXPECT_EQ(auth.Verify("Basic abc").status().code(), StatusCode::kUnauthenticated);
  EXPECT_EQ(auth.Verify("Bearer cpn_short").status().code(), StatusCode::kUnauthenticated);
  const std::string unknown = "Bearer cpn_" + std::string(64, 'a');
  EXPECT_EQ(auth.Verify(unknown).status().message(), "invalid, expired or revoked token");
  EXPECT_TRUE(auth.Verify("Bearer " + short_lived->secret).ok());
  clock_.AdvanceMs(60'000);
  EXPECT_EQ(auth.Verify("Bearer " + short_lived->secret).status().message(),
            "invalid, expired or revoked token");
  ASSERT_TRUE(auth.Revoke(revoked->record.id).ok());
  EXPECT_EQ(auth.Verify("Bearer " + revoked->secret).status().message(),
            "invalid, expired or revoked token");
  Authenticator restarted(*store_, clock_);  // revocation is durable
  ASSERT_TRUE(restarted.Load().ok());
  EXPECT_FALSE(restarted.Verify("Bearer " + revoked->secret).ok());
  EXPECT_EQ(auth.Revoke("tok-000000000000").code(), StatusCode::kNotFound);
}

TEST_F(AuthTest, SubjectsAreValidatedForTheirRole) {
  Authenticator auth(*store_, clock_);
  EXPECT_FALSE(auth.Issue(Role::kProvider, "cpn:cn.nx/zwcloud/zw-01", "", 0).ok());  // a site
  EXPECT_FALSE(auth.Issue(Role::kSite, "cpn:cn.nx/zwcloud", "", 0).ok());            // a provider
  EXPECT_FALSE(auth.Issue(Role::kTenant, "bad tenant", "", 0).ok());
  EXPECT_FALSE(auth.Issue(Role::kOperator, "someone", "", 0).ok());
  EXPECT_FALSE(auth.Issue(Role::kTenant, "t", "bad user!", 0).ok());
  EXPECT_FALSE(auth.Issue(Role::kTenant, "t", "", -1).ok());
  EXPECT_EQ(ParseRole("admin").status().code(), StatusCode::kInvalidArgument);
}

TEST_F(AuthTest, EachTokenHasARequestBudgetOperatorsAndSitesHaveNone) {
  Authenticator auth(*store_, clock_, RateLimit{10, 20});
  auto tenant = auth.Verify("Bearer " + auth.Issue(Role::kTenant, "t", "", 0)->secret);
  auto op = auth.Verify("Bearer " + auth.Issue(Role::kOperator, "", "root", 0)->secret);
  ASSERT_TRUE(tenant.ok() && op.ok());
  for (int i = 0; i < 20; ++i) EXPECT_FALSE(auth.Throttle(*tenant).has_value()) << i;
  auto wait = auth.Throttle(*tenant);
  ASSERT_TRUE(wait.has_value());
  EXPECT_EQ(*wait, 1);    // a tenth of a second, rounded up to whole seconds
  clock_.AdvanceMs(100);  // one request's worth at 10/s
  EXPECT_FALSE(auth.Throttle(*tenant).has_value());
  EXPECT_TRUE(auth.Throttle(*tenant).has_value());
  for (int i = 0; i < 1000; ++i) EXPECT_FALSE(auth.Throttle(*op).has_value());
}

}  // namespace
}  // namespace cpn
