// Metering and billing: each ended job is charged once, at its order's price,
// in the transaction that ends it; every charge equals the provider's
// revenue plus the platform's fee; after a random workload the tenants'
// bills and the providers' statements balance to the fen.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>
#include <set>

#include "src/core/ids.h"
#include "src/server/api.h"
#include "src/server/platform.h"
#include "src/store/sqlite_store.h"
#include "src/testing/fixtures.h"
#include "src/testing/platform_fixture.h"

namespace cpn {
namespace {

class BillingTest : public ::testing::Test, protected testing::PlatformWorld {
 protected:
  BillingTest() {
    for (const auto& s : network_.sites()) EXPECT_TRUE(platform_.RegisterSite(SiteToJson(s)).ok());
  }
  static JobSpec Job(const std::string& tenant, int64_t cards, const std::string& accelerator) {
    return TrainingJob(tenant, cards, accelerator);
  }
};

TEST_F(BillingTest, AFinishedJobIsChargedOnceAtItsOrderPrice) {
  auto job = platform_.Submit(Job("t", 4, "test-gpu"));
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  ASSERT_EQ(job->pool_id, "cpn:cn.nx/acme/nx-1/gpu");
  const std::string site = "cpn:cn.nx/acme/nx-1";
  ASSERT_TRUE(platform_.Report(job->id, {site, "running", {}, ""}).ok());
  clock_.AdvanceMs(3'600'000);
  // Still running: metered, not yet charged.
  EXPECT_TRUE(store_->ListLedger({})->empty());
  ASSERT_TRUE(platform_.Report(job->id, {site, "succeeded", 0, ""}).ok());
  ASSERT_TRUE(platform_.Report(job->id, {site, "succeeded", 0, ""}).ok());  // a retried report
  auto ledger = store_->ListLedger({});
  ASSERT_TRUE(ledger.ok());
  ASSERT_EQ(ledger->size(), 1u);
  const LedgerEntry& e = (*ledger)[0];
  EXPECT_EQ(e.job_id, job->id);
  EXPECT_EQ(e.tenant, "t");
  EXPECT_EQ(e.provider_id, "cpn:cn.nx/acme");
  EXPECT_EQ(e.site_id, site);
  EXPECT_EQ(e.accelerator, "test-gpu");
  EXPECT_EQ(e.month, "2023-11");  // the fake clock's 1,700,000,000 s
  EXPECT_DOUBLE_EQ(e.card_hours, 4.0);
  EXPECT_DOUBLE_EQ(e.price_cny_per_card_hour, 5.0);
  EXPECT_EQ(e.compute_fen, 2000);  // 4 card-h x 5 CNY
  EXPECT_EQ(e.transfer_fen, std::llround(job->order["transfer_cny"].get<double>() * 100));
  EXPECT_EQ(e.charge_fen, e.compute_fen + e.transfer_fen);
  EXPECT_EQ(e.fee_fen, (e.charge_fen * 500 + 5000) / 10000);
  EXPECT_EQ(e.charge_fen, e.fee_fen + e.provider_fen);
  // The price was snapshotted: a new price on the site changes nothing billed.
  Json cheaper = SiteToJson(*network_.FindSite(site));
  cheaper["pools"][0]["price_cny_per_card_hour"] = 1.0;
  ASSERT_TRUE(platform_.RegisterSite(cheaper).ok());
  EXPECT_EQ(store_->ListLedger({})->at(0).compute_fen, 2000);
  // A job cancelled before it ran costs nothing.
  auto never = platform_.Submit(Job("t", 64, "test-gpu"));  // waits: no pool has 64 free
  if (never.ok() && never->state == "pending") {
    ASSERT_TRUE(platform_.Cancel(never->id).ok());
    EXPECT_EQ(store_->ListLedger({})->size(), 1u);
  }
}

TEST_F(BillingTest, TheBooksBalanceAfterARandomWorkload) {
  std::mt19937 rng(20261201);
  const std::vector<std::string> tenants = {"bj-health", "sh-finance", "sz-robotics", "edu"};
  const std::vector<std::string> accelerators = {"test-gpu", "test-npu", ""};
  std::map<std::string, std::string> running_at;  // job -> site, once reported running
  std::set<std::string> scheduled;
  int submitted = 0;
  auto step_sites = [&] {
    for (const auto& s : network_.sites()) {
      auto reply = platform_.Heartbeat(s.id, Json::object());
      ASSERT_TRUE(reply.ok()) << reply.status().ToString();
      for (const auto& a : reply->assignments) {
        if (running_at.count(a.job_id)) continue;
        ASSERT_TRUE(platform_.Report(a.job_id, {s.id, "running", {}, ""}).ok());
        running_at[a.job_id] = s.id;
      }
    }
  };
  for (int step = 0; step < 400; ++step) {
    const int action = static_cast<int>(rng() % 10);
    if (action < 4) {
      auto job = platform_.Submit(Job(tenants[rng() % tenants.size()], 1 + rng() % 8,
                                      accelerators[rng() % accelerators.size()]));
      if (job.ok()) ++submitted;
    } else if (action < 8 && !running_at.empty()) {
      auto it = running_at.begin();
      std::advance(it, rng() % running_at.size());
      const std::string state = rng() % 5 == 0 ? "failed" : "succeeded";
      ASSERT_TRUE(
          platform_.Report(it->first, {it->second, state, state == "failed" ? 1 : 0, ""}).ok());
      // Agents repeat reports they are unsure were heard.
      if (rng() % 3 == 0) {
        ASSERT_TRUE(platform_.Report(it->first, {it->second, state, 0, ""}).ok() ||
                    state == "failed");
      }
      running_at.erase(it);
    } else if (!running_at.empty() && rng() % 2 == 0) {
      auto it = running_at.begin();
      std::advance(it, rng() % running_at.size());
      ASSERT_TRUE(platform_.Cancel(it->first).ok());
      ASSERT_TRUE(platform_.Report(it->first, {it->second, "cancelled", {}, ""}).ok());
      running_at.erase(it);
    }
    // Up to four hours pass (the run spans two months); the sites keep their leases (heartbeats
    // come before the round that would find them silent).
    clock_.AdvanceMs(static_cast<int64_t>(rng() % 14'400'000));
    step_sites();
    ASSERT_TRUE(platform_.Tick().ok());
    step_sites();
  }
  // Everything still running finishes.
  for (const auto& [id, site] : running_at) {
    ASSERT_TRUE(platform_.Report(id, {site, "succeeded", 0, ""}).ok());
  }
  ASSERT_GT(submitted, 100);

  auto ledger = store_->ListLedger({});
  ASSERT_TRUE(ledger.ok());
  // One line per job that ran and ended; none twice.
  JobFilter all;
  all.limit = 100000;
  auto jobs = store_->ListJobs(all);
  ASSERT_TRUE(jobs.ok());
  std::map<std::string, JobRecord> ran;
  for (const auto& j : *jobs) {
    if (IsTerminalState(j.state) && j.started_ms > 0) ran[j.id] = j;
  }
  ASSERT_EQ(ledger->size(), ran.size());
  ASSERT_GT(ran.size(), 50u);
  std::set<std::string> months;
  int64_t charged = 0, fees = 0, revenue = 0;
  for (const auto& e : *ledger) {
    ASSERT_TRUE(ran.count(e.job_id)) << e.job_id;
    const JobRecord& j = ran[e.job_id];
    // Recomputed from the job's own record: cards x hours x snapshot price.
    const double card_h =
        j.order["cards"].get<double>() * static_cast<double>(j.finished_ms - j.started_ms) / 3.6e6;
    EXPECT_NEAR(e.card_hours, card_h, 1e-9);
    EXPECT_EQ(e.compute_fen,
              std::llround(card_h * j.order["price_cny_per_card_hour"].get<double>() * 100));
    EXPECT_EQ(e.charge_fen, e.compute_fen + e.transfer_fen);
    EXPECT_EQ(e.charge_fen, e.fee_fen + e.provider_fen);
    EXPECT_EQ(e.tenant, j.tenant);
    EXPECT_EQ(e.provider_id, ParseResourceId(j.site_id)->ProviderId());
    charged += e.charge_fen;
    fees += e.fee_fen;
    revenue += e.provider_fen;
    months.insert(e.month);
  }
  EXPECT_EQ(charged, fees + revenue);
  EXPECT_GE(months.size(), 2u);
  // The same books as the bills and statements present them, month by month.
  std::set<std::string> providers;
  for (const auto& e : *ledger) providers.insert(e.provider_id);
  int64_t billed = 0, settled_charged = 0, settled_fee = 0, settled_revenue = 0;
  for (const auto& month : months) {
    for (const auto& t : tenants) {
      LedgerFilter f;
      f.tenant = t;
      f.month = month;
      billed += BillToJson(t, month, *store_->ListLedger(f))["totals"]["total_fen"].get<int64_t>();
    }
    for (const auto& p : providers) {
      LedgerFilter f;
      f.provider_id = p;
      f.month = month;
      Json st = StatementToJson(p, month, *store_->ListLedger(f), 500)["totals"];
      settled_charged += st["charged_fen"].get<int64_t>();
      settled_fee += st["fee_fen"].get<int64_t>();
      settled_revenue += st["revenue_fen"].get<int64_t>();
    }
  }
  EXPECT_EQ(billed, charged);
  EXPECT_EQ(settled_charged, charged);
  EXPECT_EQ(settled_fee + settled_revenue, billed);
  std::printf("books: %zu jobs charged over %zu month(s): %.2f CNY = %.2f revenue + %.2f fees\n",
              ledger->size(), months.size(), charged / 100.0, revenue / 100.0, fees / 100.0);
  // The ledger cannot be rewritten.
  JobWrite again;
  again.ledger.push_back(ledger->front());
  ASSERT_TRUE(store_->WriteJobs({again}).ok());  // ignored: that job is charged already
  EXPECT_EQ(store_->ListLedger({})->size(), ledger->size());
}

TEST_F(BillingTest, QuotasRefuseJobsOverCardsOrBudgetWithTheFigures) {
  TenantQuota q;
  q.max_cards = {{"t", 6}, {"*", 10}};  // the test catalog's vendor is "T"
  ASSERT_TRUE(platform_.SetQuota("acme", q).ok());
  auto first = platform_.Submit(Job("acme", 4, "test-gpu"));
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  auto second = platform_.Submit(Job("acme", 4, "test-gpu"));
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(second.status().message(),
            "quota: tenant acme may hold at most 6 t card(s) at once; its unfinished jobs hold 4 "
            "and this job asks for 4");
  // Another tenant is not limited by it; cards given back count again.
  EXPECT_TRUE(platform_.Submit(Job("zeta", 4, "test-gpu")).ok());
  ASSERT_TRUE(platform_.Cancel(first->id).ok());
  ASSERT_TRUE(platform_.Report(first->id, {first->site_id, "cancelled", {}, ""}).ok());
  EXPECT_TRUE(platform_.Submit(Job("acme", 4, "test-gpu")).ok());
  // A budget: the next job's estimate would go over it.
  TenantQuota money;
  money.monthly_budget_cny = 300;
  ASSERT_TRUE(platform_.SetQuota("acme", money).ok());
  auto over = platform_.Submit(Job("acme", 4, "test-gpu"));
  ASSERT_FALSE(over.ok());
  EXPECT_NE(over.status().message().find("quota: tenant acme's budget for 2023-11 is 300.00 CNY; "
                                         "charged so far 0.00, unfinished jobs' estimates"),
            std::string::npos)
      << over.status().message();
  // Quotas survive a restart (they are in the store).
  Platform restarted(*store_, clock_, catalog_, network_,
                     [] { return std::string("job-0000000000ff"); });
  auto kept = restarted.GetQuota("acme");
  ASSERT_TRUE(kept.ok() && kept->has_value());
  EXPECT_EQ((*kept)->monthly_budget_cny, 300);
  EXPECT_FALSE(QuotaFromJson(Json::parse(R"({"max_cards":{"NVIDIA":3}})")).ok());
  EXPECT_FALSE(QuotaFromJson(Json::parse(R"({"max_cards":{"nvidia":-3}})")).ok());
  EXPECT_FALSE(QuotaFromJson(Json::parse(R"({"monthly_budget_cny":-1})")).ok());
}

}  // namespace
}  // namespace cpn
