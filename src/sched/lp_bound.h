// LpLowerBound: the optimum of the LP relaxation of a batch round (GLPK).
//
// Same objective, candidates and capacities as BatchScheduler (see batch.h),
// with x_jp in [0, 1] instead of {0, 1}: its optimum is a lower bound on any
// plan's objective, so plan / bound - 1 is a certified optimality gap. With
// `integer` set it solves the integer program exactly (small instances only).
// Used by the sched benchmark and tests, never on the server's hot path.
#pragma once

#include "src/core/status.h"
#include "src/sched/batch.h"

namespace cpn::sched {

struct LpBound {
  double objective = 0;
  double seconds = 0;
  int64_t variables = 0;
  int64_t constraints = 0;
};

Result<LpBound> LpLowerBound(const BatchInput& in, const BatchOptions& options,
                             bool integer = false);

}  // namespace cpn::sched
