// `cpn dev`: a whole computing power network on one machine.
//
// Starts a `cpn server` (SQLite in the run directory) and one `cpn agent` per
// site of the sample topology as child processes of this binary, waits until
// every site has registered, submits the sample jobs from data/jobs/demo/,
// waits for them and prints where each ran, why, and what it cost against its
// home site (and, for the seed story, against buying servers). With --demo it
// then shuts everything down and exits 0 if every job ended as expected;
// otherwise it keeps the network up until Ctrl-C.
#pragma once

#include <string>

namespace cpn::cli {

struct DevOptions {
  bool demo = false;
  std::string dir;       // run directory; a fresh temporary one if empty
  int port = 0;          // server port; 0 picks a free one
  std::string topology;  // topology file; the shipped one if empty
};

int RunDev(const DevOptions& options);

}  // namespace cpn::cli
