#include "src/core/data_dir.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

namespace cpn {

Result<std::string> FindDataDir() {
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("CPN_DATA_DIR"); env != nullptr && *env != '\0') {
    candidates.push_back(env);
  }
  candidates.push_back(CPN_SOURCE_DATA_DIR);
  candidates.push_back("data");
  candidates.push_back("/usr/share/cpn");
  for (const auto& dir : candidates) {
    std::error_code ec;
    if (std::filesystem::exists(dir + "/catalog/accelerators.json", ec)) return dir;
  }
  return NotFound(
      "cannot find cpn's data directory (looked in $CPN_DATA_DIR, the source tree, ./data, "
      "/usr/share/cpn); set CPN_DATA_DIR to the repository's data/ folder");
}

Result<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound("cannot open " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Internal("error reading " + path);
  return ss.str();
}

}  // namespace cpn
