#include "src/sched/throughput.h"

namespace cpn::sched {

ThroughputMatrix::ThroughputMatrix(const Catalog& catalog, double prior_weight)
    : prior_weight_(prior_weight) {
  for (const auto& m : catalog.models()) {
    peak_tflops_.push_back(m.fp16_equivalent_tflops());
    std::array<Cell, 3> row;
    for (JobClass c : {JobClass::kTraining, JobClass::kInference, JobClass::kBatch}) {
      row[ClassIndex(c)].prior = m.efficiency(c);
    }
    cells_.push_back(row);
  }
}

double ThroughputMatrix::Efficiency(JobClass c, size_t model) const {
  const Cell& cell = cells_[model][ClassIndex(c)];
  return (prior_weight_ * cell.prior + cell.sum) /
         (prior_weight_ + static_cast<double>(cell.count));
}

void ThroughputMatrix::Observe(JobClass c, size_t model, double work_fp16_eflop, int64_t cards,
                               double run_s) {
  if (model >= cells_.size() || cards <= 0 || run_s <= 0 || work_fp16_eflop <= 0) return;
  double achieved =
      work_fp16_eflop * 1e18 / (static_cast<double>(cards) * peak_tflops_[model] * 1e12 * run_s);
  if (!(achieved > 0 && achieved <= 1.0)) return;
  Cell& cell = cells_[model][ClassIndex(c)];
  cell.sum += achieved;
  cell.count += 1;
}

int64_t ThroughputMatrix::observations(JobClass c, size_t model) const {
  return cells_[model][ClassIndex(c)].count;
}

}  // namespace cpn::sched
