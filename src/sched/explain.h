// JSON views of scheduler decisions, shared by the API, the CLI's offline
// quote and the simulator's reports, so every surface explains a decision
// the same way.
#pragma once

#include "src/core/json_reader.h"
#include "src/sched/scheduler.h"

namespace cpn::sched {

Json OptionToJson(const Option& o);
// `ownership` is added when the job's home comparison can be priced.
Json DecisionToJson(const Decision& d, const JobSpec& job, const Catalog& catalog,
                    const Topology& topology);

}  // namespace cpn::sched
