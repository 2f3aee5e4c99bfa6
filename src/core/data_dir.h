// Locating cpn's shipped data (catalog, topology, sample sites and jobs).
//
// Order: $CPN_DATA_DIR, then data/ beside the binary's source tree (compiled
// in), then ./data, then /usr/share/cpn. Returns the first that holds the
// catalog. Thread-safe (reads the environment only).
#pragma once

#include <string>

#include "src/core/status.h"

namespace cpn {

Result<std::string> FindDataDir();
Result<std::string> ReadFile(const std::string& path);

}  // namespace cpn
