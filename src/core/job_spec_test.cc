#include "src/core/job_spec.h"

#include <gtest/gtest.h>

#include <vector>

#include "src/testing/fixtures.h"

namespace cpn {
namespace {

Json ValidJob() {
  return Json::parse(R"({"name":"train-1","tenant":"bj-health","class":"training",
    "policy":"cheapest","resources":{"accelerator":"test-gpu","cards":4},
    "work":{"fp16_eflop":7.2},
    "dataset":{"site":"cpn:cn.bj/acme/bj-1","size_gb":100,"residency":"country"},
    "deadline_h":48,"budget_cny":1000,"run":{"command":"echo hi","env":{"EPOCHS":"3"}}})");
}

std::string ErrorOf(const Json& j) {
  auto c = testing::TestCatalog();
  auto s = JobSpecFromJson(j, c);
  return s.ok() ? "" : s.status().message();
}

TEST(JobSpec, ParsesAValidJobAndRoundTrips) {
  auto c = testing::TestCatalog();
  auto s = JobSpecFromJson(ValidJob(), c);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->cards, 4);
  EXPECT_EQ(s->policy, Policy::kCheapest);
  EXPECT_EQ(s->residency, Residency::kCountry);
  EXPECT_EQ(s->home_site, "cpn:cn.bj/acme/bj-1");
  EXPECT_EQ(s->env.at("EPOCHS"), "3");
  auto again = JobSpecFromJson(JobSpecToJson(*s), c);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(JobSpecToJson(*again), JobSpecToJson(*s));
}

TEST(JobSpec, EveryBadFieldIsNamed) {
  struct Case {
    std::string pointer;
    Json value;
    std::string expect;
  };
  std::vector<Case> cases = {
      {"/resources/cards", -3, "job.resources.cards: expected an integer between 1 and 65536"},
      {"/resources/cards", 1e12, "job.resources.cards: expected an integer between 1"},
      {"/resources/cards", 2.5, "job.resources.cards: expected an integer"},
      {"/resources/cards", "8", "job.resources.cards: expected an integer, got a string"},
      {"/resources/accelerator", "warp-9", "unknown accelerator 'warp-9'"},
      {"/policy", "random", "job.policy: unknown policy 'random'"},
      {"/class", "mining", "job.class: unknown job class"},
      {"/dataset/residency", "moon", "job.dataset.residency: unknown residency"},
      {"/dataset/site", "beijing", "job.dataset.site: 'beijing' is not a cpn id"},
      {"/dataset/size_gb", -1, "job.dataset.size_gb"},
      {"/work/fp16_eflop", 0, "job.work.fp16_eflop"},
      {"/deadline_h", -5, "job.deadline_h"},
      {"/name", "a b", "job.name: expected 1-128 characters"},
      {"/run/command", "", "job.run.command: must not be empty"},
      {"/run/env", Json{{"1BAD", "x"}}, "job.run.env: '1BAD' is not a valid variable name"},
      {"/run/workdir", "../../etc", "job.run.workdir: must not contain '..'"},
      {"/dataset/path", "../etc", "job.dataset.path: expected a relative path"},
      {"/dataset/path", "/abs/data", "job.dataset.path: expected a relative path"},
      {"/dataset/path", "a//b", "job.dataset.path: expected a relative path"},
      {"/surprise", 1, "job.surprise: unknown field"},
      {"/resources/gpus", 1, "job.resources.gpus: unknown field"},
      {"/dataset/classification", "secret", "job.dataset.classification: unknown classification"},
  };
  for (const auto& c : cases) {
    Json j = ValidJob();
    j[Json::json_pointer(c.pointer)] = c.value;
    std::string err = ErrorOf(j);
    EXPECT_NE(err.find(c.expect), std::string::npos) << c.pointer << " -> " << err;
  }
  Json j = ValidJob();
  j.erase("tenant");
  EXPECT_NE(ErrorOf(j).find("job.tenant: required field is missing"), std::string::npos);
  EXPECT_NE(ErrorOf(Json::array()).find("job: expected an object"), std::string::npos);
}

TEST(JobSpec, AClassificationTightensResidencyNeverLoosensIt) {
  Catalog catalog = testing::TestCatalog();
  struct Case {
    const char* classification;
    const char* asked;
    Residency effective;
  };
  for (const Case& c : std::vector<Case>{{"public", "anywhere", Residency::kAnywhere},
                                         {"internal", "anywhere", Residency::kCountry},
                                         {"personal", "anywhere", Residency::kCountry},
                                         {"important", "country", Residency::kProvince},
                                         {"core", "anywhere", Residency::kSite},
                                         {"personal", "site", Residency::kSite}}) {
    Json j = ValidJob();
    j["dataset"]["classification"] = c.classification;
    j["dataset"]["residency"] = c.asked;
    auto spec = JobSpecFromJson(j, catalog);
    ASSERT_TRUE(spec.ok()) << spec.status().ToString();
    EXPECT_EQ(spec->residency, c.effective) << c.classification << " " << c.asked;
    EXPECT_EQ(spec->classification, c.classification);
    auto again = JobSpecFromJson(JobSpecToJson(*spec), catalog);
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(JobSpecToJson(*again), JobSpecToJson(*spec));
  }
}

}  // namespace
}  // namespace cpn
