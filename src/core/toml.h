// A reader for the subset of TOML that cpn's configuration files use.
//
// Supported: comments, `key = value` pairs, `[table]` and `[[array-of-tables]]`
// headers (one level), basic and literal strings, integers, floats, booleans
// and one-line arrays of those. The result is a JSON object (so the same
// FieldReader validation applies) plus the line of every key, so that config
// errors can say "site.toml:7: site.pue: ...". Anything outside the subset is
// rejected with its line number rather than misread. Pure function.
#pragma once

#include <map>
#include <string>

#include "src/core/json_reader.h"
#include "src/core/status.h"

namespace cpn {

struct TomlDocument {
  Json root = Json::object();
  // "site.pue" or "pools[1].cards" -> 1-based line number.
  std::map<std::string, int> lines;

  // Prefixes a validation error whose message starts with a key path with
  // "<file>:<line>: " when the key is known.
  Status Locate(const Status& error, const std::string& file) const;
};

Result<TomlDocument> ParseToml(const std::string& text, const std::string& file);

}  // namespace cpn
