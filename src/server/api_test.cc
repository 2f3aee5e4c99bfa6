#include "src/server/api.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "src/store/sqlite_store.h"
#include "src/testing/fixtures.h"
#include "src/testing/platform_fixture.h"

namespace cpn {
namespace {

class ApiTest : public ::testing::Test, protected testing::PlatformWorld {
 protected:
  ApiTest() : api_(platform_) {
    for (const auto& s : network_.sites()) {
      EXPECT_EQ(Call("POST", "/v1/sites", SiteToJson(s).dump()).status, 200);
    }
  }

  net::HttpResponse Call(const std::string& method, const std::string& target,
                         const std::string& body = "",
                         const std::string& content_type = "application/json") {
    net::HttpRequest r;
    r.method = method;
    r.target = target;
    r.body = body;
    if (!content_type.empty()) r.headers["content-type"] = content_type;
    return net::AwaitSendAfter(api_.Handle(r));
  }

  // Asserts the one error shape and returns the message.
  std::string ErrorMessage(const net::HttpResponse& r) {
    Json j = Json::parse(r.body, nullptr, false);
    EXPECT_TRUE(j.is_object() && j.contains("error")) << r.body;
    if (!j.is_object() || !j.contains("error")) return "";
    EXPECT_EQ(j["error"]["status"], r.status);
    EXPECT_TRUE(j["error"]["code"].is_string());
    return j["error"]["message"];
  }

  std::string JobBody() {
    return R"({"name":"t1","tenant":"acme","policy":"cheapest",
      "resources":{"accelerator":"test-gpu","cards":4},"work":{"fp16_eflop":7.2},
      "dataset":{"site":"cpn:cn.bj/acme/bj-1","size_gb":100,"residency":"country"},
      "run":{"command":"echo hi"}})";
  }

  Api api_;
};

TEST_F(ApiTest, HappyPath) {
  EXPECT_EQ(Call("GET", "/healthz").status, 200);
  auto quote = Call("POST", "/v1/quotes", JobBody());
  ASSERT_EQ(quote.status, 200) << quote.body;
  Json q = Json::parse(quote.body);
  EXPECT_EQ(q["outcome"], "placed");
  EXPECT_EQ(q["options"][0]["pool"], "cpn:cn.nx/acme/nx-1/gpu");
  EXPECT_EQ(q["rejected"].size(), 2u);  // the NPU (model) and Singapore (residency)

  auto created = Call("POST", "/v1/jobs", JobBody());
  ASSERT_EQ(created.status, 201) << created.body;
  std::string id = Json::parse(created.body)["id"];
  EXPECT_EQ(Call("GET", "/v1/jobs/" + id).status, 200);
  EXPECT_EQ(Json::parse(Call("GET", "/v1/jobs?limit=1").body)["next_page_token"], id);
  EXPECT_EQ(Json::parse(Call("GET", "/v1/jobs/" + id + "/events").body)["events"].size(), 2u);

  auto hb = Call("POST", "/v1/sites/cn.nx/acme/nx-1/heartbeat", R"({"pools":[]})");
  ASSERT_EQ(hb.status, 200) << hb.body;
  EXPECT_EQ(Json::parse(hb.body)["assignments"][0]["job"], id);
  auto log = Call("POST", "/v1/jobs/" + id + "/logs?site=cpn%3Acn.nx%2Facme%2Fnx-1&offset=0",
                  "hello\n", "application/octet-stream");
  ASSERT_EQ(log.status, 200) << log.body;
  auto read = Call("GET", "/v1/jobs/" + id + "/logs?offset=2", "", "");
  EXPECT_EQ(read.body, "llo\n");
  EXPECT_EQ(read.headers["X-Cpn-Log-Offset"], "6");
  // Follow mode asks the server to wait while there is nothing new.
  EXPECT_GT(Call("GET", "/v1/jobs/" + id + "/logs?offset=6&follow=1", "", "").wait_up_to_ms, 0);
  auto status = Call("POST", "/v1/jobs/" + id + "/status",
                     R"({"site":"cpn:cn.nx/acme/nx-1","state":"running"})");
  EXPECT_EQ(status.status, 200) << status.body;
  auto res = Call("GET", "/v1/resources?accelerator=test-gpu&min_free=8");
  EXPECT_EQ(Json::parse(res.body)["pools"].size(), 3u);
  auto metrics = Call("GET", "/metrics");
  EXPECT_NE(metrics.body.find("cpn_jobs{state=\"running\"} 1"), std::string::npos);
  EXPECT_EQ(Json::parse(Call("GET", "/v1/providers").body)["providers"].size(), 3u);
  EXPECT_EQ(Call("DELETE", "/v1/providers/cn.bj/acme").status, 409);
  EXPECT_EQ(Call("DELETE", "/v1/sites/cn.bj/acme/bj-1").status, 200);
  EXPECT_EQ(Call("DELETE", "/v1/providers/cn.bj/acme").status, 200);
  EXPECT_EQ(Call("GET", "/v1/sites/cn.bj/acme/bj-1").status, 200);
}

TEST_F(ApiTest, BadInputGetsA4xxNamingTheProblem) {
  struct Case {
    std::string method, target, body, content_type;
    int status;
    std::string expect;
  };
  std::string job = JobBody();
  auto with = [&](const std::string& from, const std::string& to) {
    std::string s = job;
    s.replace(s.find(from), from.size(), to);
    return s;
  };
  std::vector<Case> cases = {
      {"POST", "/v1/jobs", "{\"name\": ", "application/json", 400, "malformed JSON"},
      {"POST", "/v1/jobs", with("\"policy\"", "\"colour\":1,\"policy\""), "application/json", 400,
       "job.colour: unknown field"},
      {"POST", "/v1/jobs", with("\"cards\":4", "\"cards\":-4"), "application/json", 400,
       "job.resources.cards: expected an integer between 1 and 65536, got -4"},
      {"POST", "/v1/jobs", with("\"cards\":4", "\"cards\":99999999999999999999"),
       "application/json", 400, "job.resources.cards"},
      {"POST", "/v1/jobs", with("test-gpu", "quantum-9000"), "application/json", 400,
       "unknown accelerator 'quantum-9000'"},
      {"POST", "/v1/jobs", job, "text/plain", 400, "expected Content-Type: application/json"},
      {"POST", "/v1/jobs", std::string(100, '[') + std::string(100, ']'), "application/json", 400,
       "nested deeper"},
      {"POST", "/v1/jobs", with("\"cards\":4", "\"cards\":64"), "application/json", 409,
       "cannot run anywhere"},
      {"GET", "/v1/jobs/job-ffffffffffff", "", "", 404, "job job-ffffffffffff not found"},
      {"GET", "/v1/jobs/../../etc/passwd", "", "", 404, "no such endpoint"},
      {"GET", "/v1/jobs/not-a-job", "", "", 400, "'not-a-job' is not a job id"},
      {"GET", "/v1/jobs?limit=0", "", "", 400, "query parameter limit"},
      {"GET", "/v1/jobs?limit=abc", "", "", 400, "query parameter limit"},
      {"GET", "/v1/jobs?bogus=1", "", "", 400, "unknown query parameter 'bogus'"},
      {"GET", "/v1/resources?max_price=-1", "", "", 400, "max_price"},
      {"GET", "/v1/resources?accelerator=nope", "", "", 404, "unknown accelerator 'nope'"},
      {"DELETE", "/v1/jobs", "", "", 405, "DELETE is not allowed"},
      {"GET", "/v2/jobs", "", "", 404, "the API lives under /v1"},
      {"POST", "/v1/sites", R"({"id":"nope"})", "application/json", 400, "site.id"},
      {"POST", "/v1/sites/cn.xx/a/b/heartbeat", "{}", "application/json", 404, "not registered"},
      {"POST", "/v1/jobs/job-000000000001/status", R"({"site":"x","state":"running","extra":1})",
       "application/json", 400, "status.extra: unknown field"},
      {"POST", "/v1/jobs/job-000000000001/logs?site=x&offset=0", "x", "application/json", 400,
       "octet-stream"},
  };
  for (const auto& c : cases) {
    auto r = Call(c.method, c.target, c.body, c.content_type);
    EXPECT_EQ(r.status, c.status) << c.method << " " << c.target << ": " << r.body;
    std::string msg = ErrorMessage(r);
    EXPECT_NE(msg.find(c.expect), std::string::npos) << c.target << " -> " << msg;
  }
  // Still serving.
  EXPECT_EQ(Call("GET", "/healthz").status, 200);
}

TEST_F(ApiTest, InvalidUtf8InInputDoesNotBreakTheErrorReply) {
  std::string body = JobBody();
  body.replace(body.find("\"t1\""), 4, "\"t\xff\xfe\"");
  auto r = Call("POST", "/v1/jobs", body);
  EXPECT_EQ(r.status, 400);
  EXPECT_FALSE(ErrorMessage(r).empty());
}

}  // namespace
}  // namespace cpn
