// The authorisation matrix: every endpoint x every role x own/other's
// object, with the exact status, and bodies that leak nothing of objects the
// caller may not see. Also: the audit log records changes and refusals, and
// a token over its rate gets 429 with Retry-After.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "src/server/api.h"
#include "src/store/sqlite_store.h"
#include "src/testing/fixtures.h"
#include "src/testing/platform_fixture.h"

namespace cpn {
namespace {

// The callers of the matrix. "own" objects: tenant acme's job, placed on
// site cpn:cn.nx/acme/nx-1 of provider cpn:cn.nx/acme.
enum Who {
  kAnon,
  kOperator,
  kProviderOwn,
  kProviderOther,
  kTenantOwn,
  kTenantOther,
  kSiteOwn,
  kSiteOther
};
const std::vector<Who> kEveryone = {kAnon,      kOperator,    kProviderOwn, kProviderOther,
                                    kTenantOwn, kTenantOther, kSiteOwn,     kSiteOther};
const char* Name(Who w) {
  static const char* names[] = {"anonymous",   "operator",      "provider(own)", "provider(other)",
                                "tenant(own)", "tenant(other)", "site(own)",     "site(other)"};
  return names[w];
}

class ApiAuthTest : public ::testing::Test, protected testing::PlatformWorld {
 protected:
  ApiAuthTest() : auth_(*store_, clock_, RateLimit{0, 1}), api_(platform_, &auth_) {
    tokens_[kOperator] = Issue(Role::kOperator, "");
    tokens_[kProviderOwn] = Issue(Role::kProvider, "cpn:cn.nx/acme");
    tokens_[kProviderOther] = Issue(Role::kProvider, "cpn:cn.sh/other");
    tokens_[kTenantOwn] = Issue(Role::kTenant, "acme");
    tokens_[kTenantOther] = Issue(Role::kTenant, "zeta");
    tokens_[kSiteOwn] = Issue(Role::kSite, "cpn:cn.nx/acme/nx-1");
    tokens_[kSiteOther] = Issue(Role::kSite, "cpn:cn.bj/acme/bj-1");
    for (const auto& s : network_.sites()) {
      EXPECT_EQ(Call(kOperator, "POST", "/v1/sites", SiteToJson(s).dump()).status, 200);
    }
  }
  std::string Issue(Role role, const std::string& subject) {
    auto issued = auth_.Issue(role, subject, "u1", 0);
    EXPECT_TRUE(issued.ok()) << issued.status().ToString();
    return issued.ok() ? issued->secret : "";
  }
  net::HttpResponse Call(Who who, const std::string& method, const std::string& target,
                         const std::string& body = "",
                         const std::string& content_type = "application/json") {
    net::HttpRequest r;
    r.method = method;
    r.target = target;
    r.body = body;
    r.peer = "10.0.0.7:4242";
    if (!content_type.empty()) r.headers["content-type"] = content_type;
    if (who != kAnon) r.headers["authorization"] = "Bearer " + tokens_[who];
    return net::AwaitSendAfter(api_.Handle(r));
  }
  // A job of tenant acme that can only run on nx-1 (the only test-npu pool).
  std::string JobBody(const std::string& tenant = "acme") {
    return R"({"name":"secret-model","tenant":")" + tenant + R"(","policy":"cheapest",
      "resources":{"accelerator":"test-npu","cards":2},"work":{"fp16_eflop":1},
      "dataset":{"site":"cpn:cn.bj/acme/bj-1","size_gb":1,"residency":"country"},
      "run":{"command":"echo secret-command"}})";
  }
  // Runs one row of the matrix: `expect` for each caller (everyone listed).
  void Row(const std::string& method, const std::string& target, const std::string& body,
           const std::map<Who, int>& expect, const std::string& content_type = "application/json") {
    for (Who w : kEveryone) {
      ASSERT_TRUE(expect.count(w)) << target << " has no expectation for " << Name(w);
      auto r = Call(w, method, target, body, content_type);
      EXPECT_EQ(r.status, expect.at(w))
          << method << " " << target << " as " << Name(w) << ": " << r.body.substr(0, 300);
      if (r.status >= 400) {
        // No refusal shows the job's name, command or tenant's data.
        EXPECT_EQ(r.body.find("secret-model"), std::string::npos) << Name(w) << " " << r.body;
        EXPECT_EQ(r.body.find("secret-command"), std::string::npos) << Name(w) << " " << r.body;
      }
      if (r.status == 401) {
        EXPECT_EQ(r.headers["WWW-Authenticate"], "Bearer realm=\"cpn\"");
      }
    }
  }
  // Everyone with a token: `ok`; anonymous: 401.
  std::map<Who, int> AnyToken(int ok) {
    std::map<Who, int> m;
    for (Who w : kEveryone) m[w] = w == kAnon ? 401 : ok;
    return m;
  }
  // `allowed` get `ok`, anonymous 401, the rest 403.
  std::map<Who, int> Only(std::initializer_list<Who> allowed, int ok) {
    std::map<Who, int> m = AnyToken(403);
    for (Who w : allowed) m[w] = ok;
    return m;
  }

  Authenticator auth_;
  Api api_;
  std::map<Who, std::string> tokens_;
};

TEST_F(ApiAuthTest, EveryEndpointEveryRoleOwnAndOthers) {
  auto submitted = Call(kTenantOwn, "POST", "/v1/jobs", JobBody());
  ASSERT_EQ(submitted.status, 201) << submitted.body;
  const std::string id = Json::parse(submitted.body)["id"];
  ASSERT_EQ(Json::parse(submitted.body)["site"], "cpn:cn.nx/acme/nx-1");
  const std::string job = "/v1/jobs/" + id;
  const std::string nx1 = SiteToJson(*network_.FindSite("cpn:cn.nx/acme/nx-1")).dump();

  Row("GET", "/healthz", "", [&] {
    std::map<Who, int> m;
    for (Who w : kEveryone) m[w] = 200;
    return m;
  }());
  Row("GET", "/metrics", "", Only({kOperator}, 200));
  Row("GET", "/v1/catalog", "", AnyToken(200));
  Row("GET", "/v1/providers", "", AnyToken(200));
  Row("POST", "/v1/providers", R"({"id":"cpn:cn.nx/acme","name":"Acme NX","contact":"ops@acme"})",
      Only({kOperator, kProviderOwn}, 200));
  Row("GET", "/v1/sites", "", AnyToken(200));
  Row("GET", "/v1/sites/cn.nx/acme/nx-1", "", AnyToken(200));
  Row("POST", "/v1/sites", nx1, Only({kOperator, kProviderOwn, kSiteOwn}, 200));
  Row("POST", "/v1/sites/cn.nx/acme/nx-1/drain", "", Only({kOperator, kProviderOwn}, 200));
  Row("POST", "/v1/sites/cn.nx/acme/nx-1/resume", "", Only({kOperator, kProviderOwn}, 200));
  Row("POST", "/v1/sites/cn.nx/acme/nx-1/heartbeat", "{}", Only({kOperator, kSiteOwn}, 200));
  Row("GET", "/v1/resources", "", AnyToken(200));
  Row("POST", "/v1/quotes", JobBody(), AnyToken(200));
  Row("GET", "/v1/jobs", "", Only({kOperator, kTenantOwn, kTenantOther}, 200));
  // Another tenant's job reads exactly as a job that does not exist.
  for (const std::string& sub : {std::string(), std::string("/events"), std::string("/logs")}) {
    auto expect = Only({kOperator, kTenantOwn}, 200);
    expect[kTenantOther] = 404;
    Row("GET", job + sub, "", expect);
    auto theirs = Call(kTenantOther, "GET", job + sub);
    auto missing = Call(kTenantOther, "GET", "/v1/jobs/job-00000000beef" + sub);
    EXPECT_EQ(missing.status, 404);
    std::string masked = theirs.body;
    masked.replace(masked.find(id), id.size(), "job-00000000beef");
    EXPECT_EQ(masked, missing.body);
  }
  // The other tenant's listing holds nothing of acme's, even when asked.
  for (const char* q : {"/v1/jobs", "/v1/jobs?tenant=acme"}) {
    auto list = Call(kTenantOther, "GET", q);
    EXPECT_EQ(list.status, 200);
    EXPECT_EQ(Json::parse(list.body)["jobs"].size(), 0u) << list.body;
  }
  EXPECT_EQ(Json::parse(Call(kTenantOwn, "GET", "/v1/jobs").body)["jobs"].size(), 1u);
  // Submitting for another tenant, or as a non-tenant.
  Row("POST", "/v1/jobs", JobBody("acme"), Only({kOperator, kTenantOwn}, 201));
  Row("POST", "/v1/jobs", JobBody("zeta"), Only({kOperator, kTenantOther}, 201));
  // What agents send: only the job's site (or an operator).
  Row("POST", job + "/status", R"({"site":"cpn:cn.nx/acme/nx-1","state":"running"})",
      Only({kOperator, kSiteOwn}, 200));
  Row("POST", job + "/logs?site=cpn:cn.nx/acme/nx-1&offset=0", "hello\n",
      Only({kOperator, kSiteOwn}, 200), "application/octet-stream");
  {
    // A site reporting in another site's name is refused for that reason.
    auto r = Call(kSiteOther, "POST", job + "/status",
                  R"({"site":"cpn:cn.nx/acme/nx-1","state":"running"})");
    EXPECT_EQ(r.status, 403);
    EXPECT_NE(r.body.find("may not report for site cpn:cn.nx/acme/nx-1"), std::string::npos);
  }
  Row("GET", "/v1/audit", "", Only({kOperator}, 200));
  // Money: a tenant reads its own bill, a provider its own statement.
  Row("GET", "/v1/bills?tenant=acme", "", Only({kOperator, kTenantOwn}, 200));
  {
    auto own_bill = Only({kTenantOwn, kTenantOther}, 200);
    own_bill[kOperator] = 400;  // an operator names the tenant
    Row("GET", "/v1/bills", "", own_bill);
  }
  Row("GET", "/v1/statements?provider=cpn:cn.nx/acme", "", Only({kOperator, kProviderOwn}, 200));
  Row("PUT", "/v1/tenants/acme/quota", R"({"max_cards":{"*":100}})", Only({kOperator}, 200));
  Row("GET", "/v1/tenants/acme/quota", "", Only({kOperator, kTenantOwn}, 200));
  // Tokens: issued for subjects the caller owns.
  Row("POST", "/v1/tokens", R"({"role":"tenant","subject":"acme","user":"bob"})",
      Only({kOperator, kTenantOwn}, 201));
  Row("POST", "/v1/tokens", R"({"role":"site","subject":"cpn:cn.nx/acme/nx-1"})",
      Only({kOperator, kProviderOwn}, 201));
  Row("POST", "/v1/tokens", R"({"role":"operator"})", Only({kOperator}, 201));
  {
    auto list = Only({kOperator, kProviderOwn, kProviderOther, kTenantOwn, kTenantOther}, 200);
    Row("GET", "/v1/tokens", "", list);
    // Each sees only its own subjects' tokens.
    const Json theirs = Json::parse(Call(kTenantOther, "GET", "/v1/tokens").body);
    ASSERT_FALSE(theirs["tokens"].empty());
    for (const auto& t : theirs["tokens"]) {
      EXPECT_EQ(t["subject"], "zeta");
      EXPECT_FALSE(t.contains("token"));  // never the secret
      EXPECT_FALSE(t.contains("hash"));
    }
  }
  // Revoking: someone else's token reads as missing.
  auto bob = Call(kTenantOwn, "POST", "/v1/tokens", R"({"role":"tenant","subject":"acme"})");
  const std::string bob_id = Json::parse(bob.body)["id"];
  for (Who w : {kTenantOther, kProviderOwn}) {
    EXPECT_EQ(Call(w, "DELETE", "/v1/tokens/" + bob_id).status, 404) << Name(w);
  }
  EXPECT_EQ(Call(kSiteOwn, "DELETE", "/v1/tokens/" + bob_id).status, 403);
  EXPECT_EQ(Call(kAnon, "DELETE", "/v1/tokens/" + bob_id).status, 401);
  EXPECT_EQ(Call(kTenantOwn, "DELETE", "/v1/tokens/" + bob_id).status, 200);
  // Cancelling: another tenant's job is not found; the owner cancels it.
  for (Who w : {kProviderOwn, kSiteOwn}) EXPECT_EQ(Call(w, "POST", job + "/cancel").status, 403);
  EXPECT_EQ(Call(kTenantOther, "POST", job + "/cancel").status, 404);
  EXPECT_EQ(Call(kAnon, "POST", job + "/cancel").status, 401);
  EXPECT_EQ(Call(kTenantOwn, "POST", job + "/cancel").status, 200);
  // Destructive operator-only calls, refused to everyone else first.
  Row("DELETE", "/v1/sites/sg.sg/acme/sg-1", "", [&] {
    auto m = Only({kOperator}, 200);
    return m;
  }());
  ASSERT_EQ(Call(kOperator, "POST", "/v1/providers",
                 R"({"id":"cpn:cn.xx/dummy","name":"Dummy","contact":"x"})")
                .status,
            200);
  Row("DELETE", "/v1/providers/cn.xx/dummy", "", Only({kOperator}, 200));
}

TEST_F(ApiAuthTest, TheAuditLogRecordsChangesAndRefusalsWithTheRule) {
  auto ok = Call(kTenantOwn, "POST", "/v1/jobs", JobBody());
  ASSERT_EQ(ok.status, 201);
  const std::string id = Json::parse(ok.body)["id"];
  EXPECT_EQ(Call(kTenantOther, "POST", "/v1/jobs", JobBody()).status, 403);
  EXPECT_EQ(Call(kProviderOther, "POST", "/v1/sites/cn.nx/acme/nx-1/drain").status, 403);
  EXPECT_EQ(Call(kProviderOwn, "POST", "/v1/sites/cn.nx/acme/nx-1/drain").status, 200);
  EXPECT_EQ(Call(kTenantOwn, "POST", "/v1/jobs/" + id + "/cancel").status, 200);
  auto r = Call(kOperator, "GET", "/v1/audit?limit=1000");
  ASSERT_EQ(r.status, 200);
  std::vector<std::string> lines;
  const Json audit = Json::parse(r.body);
  for (const auto& a : audit["audit"]) {
    if (a["action"] == "site.register") continue;  // the fixture's
    lines.push_back(fmt::format("{} {} {} {} {} [{}]", a["principal"].get<std::string>(),
                                a["action"].get<std::string>(), a["object"].get<std::string>(),
                                a["peer"].get<std::string>(), a["outcome"].get<std::string>(),
                                a["detail"].get<std::string>()));
  }
  ASSERT_EQ(lines.size(), 5u) << r.body;
  EXPECT_EQ(lines[0],
            "tenant:acme/u1 job.submit " + id + " 10.0.0.7:4242 ok [tenant submits its own job]");
  EXPECT_EQ(lines[1].substr(0, 47), "tenant:zeta/u1 job.submit  10.0.0.7:4242 permis");
  EXPECT_NE(lines[1].find("may not submit jobs for tenant acme"), std::string::npos);
  EXPECT_EQ(lines[2].substr(0, 60), "provider:cpn:cn.sh/other/u1 site.drain cpn:cn.nx/acme/nx-1 1");
  EXPECT_EQ(lines[3],
            "provider:cpn:cn.nx/acme/u1 site.drain cpn:cn.nx/acme/nx-1 "
            "10.0.0.7:4242 ok [provider owns the site]");
  EXPECT_EQ(lines[4],
            "tenant:acme/u1 job.cancel " + id + " 10.0.0.7:4242 ok [tenant owns the job]");
  // Append-only, in the store itself.
  auto filtered = Call(kOperator, "GET", "/v1/audit?action=site.drain");
  EXPECT_EQ(Json::parse(filtered.body)["audit"].size(), 2u);
}

// Classified data: the classification's rule tightens the job's residency,
// the scheduler keeps the job inside it (and says why elsewhere is refused),
// and every placement is in the audit log with the rule that allowed it.
TEST_F(ApiAuthTest, ClassifiedDataStaysWhereItsRuleAllowsAndEachPlacementIsAudited) {
  std::string body = JobBody();
  body.replace(body.find(R"("residency":"country")"), 21,
               R"("residency":"anywhere","classification":"important")");
  auto quote = Call(kTenantOwn, "POST", "/v1/quotes", body);
  ASSERT_EQ(quote.status, 200) << quote.body;
  bool refused_abroad = false;
  const Json quoted = Json::parse(quote.body);
  for (const auto& r : quoted["rejected"]) {
    if (r["reason"] == "residency") {
      EXPECT_EQ(r["pool"], "cpn:cn.nx/acme/nx-1/npu");
      EXPECT_NE(r["detail"].get<std::string>().find("its dataset is classified important"),
                std::string::npos)
          << r.dump();
      refused_abroad = true;
    }
  }
  EXPECT_TRUE(refused_abroad) << quote.body;  // nx-1 is another province
  // Personal information may go anywhere in the country: nx-1 is allowed.
  body.replace(body.find("important"), 9, "personal");
  auto placed = Call(kTenantOwn, "POST", "/v1/jobs", body);
  ASSERT_EQ(placed.status, 201) << placed.body;
  const Json job = Json::parse(placed.body);
  EXPECT_EQ(job["spec"]["dataset"]["residency"], "country");  // tightened from anywhere
  EXPECT_EQ(job["site"], "cpn:cn.nx/acme/nx-1");
  auto audit = Call(kOperator, "GET", "/v1/audit?action=data.place");
  const Json lines = Json::parse(audit.body)["audit"];
  ASSERT_EQ(lines.size(), 1u) << audit.body;
  EXPECT_EQ(lines[0]["principal"], "platform:scheduler");
  EXPECT_EQ(lines[0]["object"], job["id"]);
  EXPECT_EQ(lines[0]["detail"],
            "personal data of tenant acme from cpn:cn.bj/acme/bj-1 placed on cpn:cn.nx/acme/nx-1: "
            "classification personal keeps it within country, job residency country");
  // An unknown classification is refused at the edge.
  body.replace(body.find("personal"), 8, "secret");
  auto bad = Call(kTenantOwn, "POST", "/v1/jobs", body);
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.body.find("job.dataset.classification: unknown classification 'secret'"),
            std::string::npos)
      << bad.body;
}

TEST(ApiRateLimit, ATokenOverItsRateGets429WithRetryAfter) {
  FakeClock clock;
  Catalog catalog = testing::TestCatalog();
  Topology network = testing::TestTopology(catalog);
  auto store = std::move(SqliteStore::Open(":memory:")).value();
  int next = 0;
  Platform platform(*store, clock, catalog, network,
                    [&] { return fmt::format("job-{:012x}", ++next); });
  Authenticator auth(*store, clock, RateLimit{2, 5});
  Api api(platform, &auth);
  net::HttpRequest r;
  r.method = "GET";
  r.target = "/v1/catalog";
  r.headers["authorization"] = "Bearer " + auth.Issue(Role::kTenant, "t", "", 0)->secret;
  for (int i = 0; i < 5; ++i) EXPECT_EQ(api.Handle(r).status, 200) << i;
  auto limited = api.Handle(r);
  EXPECT_EQ(limited.status, 429);
  EXPECT_EQ(limited.headers["Retry-After"], "1");
  EXPECT_NE(limited.body.find("over its request rate"), std::string::npos);
  clock.AdvanceMs(500);
  EXPECT_EQ(api.Handle(r).status, 200);
}

}  // namespace
}  // namespace cpn
