// The one cpn binary: server, agent, dev network and client commands.
#include "src/cli/cli.h"

int main(int argc, char** argv) { return cpn::cli::Main(argc, argv); }
