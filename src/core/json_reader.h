// FieldReader: strict, path-aware reading of one JSON object.
//
// Every input cpn accepts as JSON (job specs, catalog, topology, API bodies)
// goes through a FieldReader, so all of them reject input the same way: the
// first problem is reported with the full path of the field
// ("job.gang.count: expected an integer between 1 and 4096, got -3"), and
// fields the reader was never asked for are reported as unknown, with the list
// of fields that are accepted. A reader remembers only its first error; call
// Finish() once all fields are read. Not thread-safe; cheap to construct.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "src/core/status.h"

namespace cpn {

using Json = nlohmann::json;

// Parses text as JSON; errors name `what` and the byte offset.
Result<Json> ParseJson(const std::string& text, const std::string& what);

class FieldReader {
 public:
  // `path` names the object in messages, e.g. "job" or "sites[2]".
  FieldReader(const Json& object, std::string path);

  bool has(const std::string& name) const;
  const std::string& path() const { return path_; }
  std::string FieldPath(const std::string& name) const {
    return path_.empty() ? name : path_ + "." + name;
  }

  void String(const std::string& name, std::string* out, bool required = true);
  void Number(const std::string& name, double* out, double min, double max, bool required = true);
  void OptionalNumber(const std::string& name, std::optional<double>* out, double min, double max);
  void Int(const std::string& name, int64_t* out, int64_t min, int64_t max, bool required = true);
  void Bool(const std::string& name, bool* out, bool required = true);
  void StringList(const std::string& name, std::vector<std::string>* out, bool required = true);
  // Returns the raw value of an object/array field for a nested reader, or nullptr.
  const Json* Object(const std::string& name, bool required = true);
  const Json* Array(const std::string& name, bool required = true);
  // Marks a field as known without reading it.
  void Ignore(const std::string& name);

  // Records an error found by the caller (first one wins).
  void Fail(Status status);
  void FailField(const std::string& name, const std::string& message);
  bool ok() const { return status_.ok(); }
  // The first error, else an error for unknown fields, else OK.
  Status Finish();

 private:
  const Json* Find(const std::string& name, bool required);

  const Json& object_;
  std::string path_;
  std::set<std::string> known_;
  Status status_;
};

// "a JSON string", "an integer", ... for messages.
std::string JsonTypeName(const Json& value);

}  // namespace cpn
