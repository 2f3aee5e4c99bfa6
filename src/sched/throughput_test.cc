#include "src/sched/throughput.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "src/testing/fixtures.h"

namespace cpn::sched {
namespace {

TEST(ThroughputMatrix, EstimatesConvergeToWhatSitesDeliver) {
  Catalog catalog = cpn::testing::TestCatalog();
  ThroughputMatrix m(catalog);
  const size_t gpu = 0;  // "test-gpu": catalog says training efficiency 0.5
  ASSERT_EQ(catalog.models()[gpu].id, "test-gpu");
  EXPECT_DOUBLE_EQ(m.Efficiency(JobClass::kTraining, gpu), 0.5);
  // The site really delivers 0.32 of peak, with +-10% noise per run.
  const double truth = 0.32;
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> noise(0.9, 1.1);
  double previous_error = std::fabs(m.Efficiency(JobClass::kTraining, gpu) - truth);
  std::vector<double> errors;
  for (int n = 1; n <= 200; ++n) {
    double work = 50, cards = 8;
    double run_s = work * 1e18 / (cards * 100e12 * truth * noise(rng));
    m.Observe(JobClass::kTraining, gpu, work, 8, run_s);
    if (n == 1 || n == 10 || n == 50 || n == 200) {
      errors.push_back(std::fabs(m.Efficiency(JobClass::kTraining, gpu) - truth));
    }
  }
  EXPECT_LT(errors[0], previous_error);
  for (size_t i = 1; i < errors.size(); ++i) EXPECT_LT(errors[i], errors[i - 1]);
  EXPECT_LT(errors.back() / truth, 0.02);  // within 2% after 200 runs
  EXPECT_EQ(m.observations(JobClass::kTraining, gpu), 200);
  // Other cells are untouched, and nonsense measurements are ignored.
  EXPECT_DOUBLE_EQ(m.Efficiency(JobClass::kInference, gpu), 0.25);
  m.Observe(JobClass::kInference, gpu, 50, 8, 1e-6);  // faster than peak
  m.Observe(JobClass::kInference, gpu, 50, 0, 100);
  EXPECT_EQ(m.observations(JobClass::kInference, gpu), 0);
}

}  // namespace
}  // namespace cpn::sched
