// SVG charts for `cpn sim` reports: plain, dependency-free SVG text.
#pragma once

#include <string>
#include <vector>

#include "src/sim/engine.h"

namespace cpn::sim {

// Cost (CNY) against mean completion time (h), one labelled point per policy.
std::string CostVsCompletionSvg(const std::vector<SimReport>& reports);
// Utilisation per hub, one group of bars per hub, one bar per policy.
std::string UtilisationSvg(const std::vector<SimReport>& reports);
// Utilisation of each hub over time under one policy, a line per hub.
std::string UtilisationOverTimeSvg(const SimReport& report);

}  // namespace cpn::sim
