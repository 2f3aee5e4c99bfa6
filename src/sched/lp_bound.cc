#include "src/sched/lp_bound.h"

#include <glpk.h>

#include <chrono>
#include <memory>
#include <vector>

namespace cpn::sched {

Result<LpBound> LpLowerBound(const BatchInput& in, const BatchOptions& options, bool integer) {
  auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<glp_prob, void (*)(glp_prob*)> lp(glp_create_prob(), glp_delete_prob);
  glp_set_obj_dir(lp.get(), GLP_MIN);
  const int jobs = static_cast<int>(in.jobs.size());
  const int pools = static_cast<int>(in.pools.size());
  // Rows 1..jobs: each job at most once; rows jobs+1..: pool capacity.
  glp_add_rows(lp.get(), jobs + pools);
  for (int j = 0; j < jobs; ++j) glp_set_row_bnds(lp.get(), j + 1, GLP_UP, 0, 1);
  for (int p = 0; p < pools; ++p) {
    double cap = in.pools[p].available ? std::max(0, in.pools[p].free_cards) : 0;
    glp_set_row_bnds(lp.get(), jobs + p + 1, GLP_UP, 0, cap);
  }
  std::vector<int> ia{0}, ja{0};
  std::vector<double> ar{0};
  double constant = 0;
  int col = 0;
  for (int j = 0; j < jobs; ++j) {
    auto cands = BatchScheduler::FeasiblePools(in, options, static_cast<size_t>(j));
    if (cands.empty()) continue;
    // Every placeable job costs the penalty unless placed: U + sum (r - U) x.
    constant += options.unplaced_penalty;
    glp_add_cols(lp.get(), static_cast<int>(cands.size()));
    for (const auto& c : cands) {
      ++col;
      glp_set_col_bnds(lp.get(), col, GLP_DB, 0, 1);
      if (integer) glp_set_col_kind(lp.get(), col, GLP_BV);
      glp_set_obj_coef(lp.get(), col, c.r - options.unplaced_penalty);
      ia.push_back(j + 1);
      ja.push_back(col);
      ar.push_back(1);
      ia.push_back(jobs + static_cast<int>(c.pool) + 1);
      ja.push_back(col);
      ar.push_back(in.jobs[j].cards);
    }
  }
  LpBound out;
  out.variables = col;
  out.constraints = jobs + pools;
  if (col == 0) {
    out.objective = 0;
    return out;
  }
  glp_load_matrix(lp.get(), static_cast<int>(ia.size()) - 1, ia.data(), ja.data(), ar.data());
  glp_smcp smcp;
  glp_init_smcp(&smcp);
  smcp.msg_lev = GLP_MSG_OFF;
  smcp.presolve = GLP_ON;
  int rc = glp_simplex(lp.get(), &smcp);
  if (rc != 0 || glp_get_status(lp.get()) != GLP_OPT) {
    return Internal("GLPK simplex did not reach an optimum (code " + std::to_string(rc) + ")");
  }
  double value = glp_get_obj_val(lp.get());
  if (integer) {
    glp_iocp iocp;
    glp_init_iocp(&iocp);
    iocp.msg_lev = GLP_MSG_OFF;
    iocp.presolve = GLP_ON;
    iocp.tm_lim = 60'000;  // ms; larger instances are what the heuristic is for
    rc = glp_intopt(lp.get(), &iocp);
    if (rc != 0 || glp_mip_status(lp.get()) != GLP_OPT) {
      return Status(StatusCode::kDeadlineExceeded,
                    "GLPK branch-and-bound did not prove an optimum within 60 s (code " +
                        std::to_string(rc) + ")");
    }
    value = glp_mip_obj_val(lp.get());
  }
  out.objective = value + constant;
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

}  // namespace cpn::sched
