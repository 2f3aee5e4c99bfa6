// The `cpn` command line: every subcommand (server, agent, dev, and the
// client commands) is wired here from the libraries; apps/cpn.cc only calls
// Main. Client commands talk to the server named by --server or $CPN_SERVER.
#pragma once

#include <atomic>
#include <string>

#include "src/core/json_reader.h"

namespace cpn::cli {

int Main(int argc, char** argv);

// Set by SIGINT/SIGTERM; long-running subcommands stop when it is set.
extern std::atomic<bool> g_stop;
void InstallStopHandlers();

// Printers shared by the client commands and `cpn dev`.
std::string RenderDecision(const Json& decision);
std::string RenderJob(const Json& job, const Json& events);

}  // namespace cpn::cli
