// ThroughputMatrix: how fast each job class really runs on each accelerator.
//
// The scheduler estimates run time as work / (cards x FP16-equivalent peak x
// efficiency). Efficiencies start from the catalog's estimates and move toward
// what completed jobs measured (the platform's sensing): each cell is the
// mean of its observations with the catalog value counted as `prior_weight`
// observations, so a few noisy runs cannot swing it and many runs dominate.
// Pure value type; not thread-safe to mutate.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "src/core/catalog.h"

namespace cpn::sched {

class ThroughputMatrix {
 public:
  explicit ThroughputMatrix(const Catalog& catalog, double prior_weight = 3.0);

  // Efficiency of `job_class` on the catalog's model at `model_index`.
  double Efficiency(JobClass job_class, size_t model_index) const;
  // A completed job: `work_fp16_eflop` on `cards` cards took `run_s` seconds.
  // Observations outside (0, 1] of peak are ignored as mis-measured.
  void Observe(JobClass job_class, size_t model_index, double work_fp16_eflop, int64_t cards,
               double run_s);
  int64_t observations(JobClass job_class, size_t model_index) const;
  size_t models() const { return peak_tflops_.size(); }

 private:
  struct Cell {
    double prior = 0;
    double sum = 0;
    int64_t count = 0;
  };
  static size_t ClassIndex(JobClass c) { return static_cast<size_t>(c); }
  double prior_weight_;
  std::vector<double> peak_tflops_;
  std::vector<std::array<Cell, 3>> cells_;
};

}  // namespace cpn::sched
