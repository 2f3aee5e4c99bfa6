#include "src/core/json_reader.h"

#include <fmt/format.h>

#include <cmath>

namespace cpn {

namespace {

// nlohmann's parser recurses per nesting level; refuse deep documents before
// they reach it so hostile input cannot exhaust the stack.
constexpr int kMaxJsonDepth = 64;

bool TooDeep(const std::string& text) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) return true;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return false;
}

}  // namespace

Result<Json> ParseJson(const std::string& text, const std::string& what) {
  if (TooDeep(text)) {
    return InvalidArgument(
        fmt::format("{}: JSON nested deeper than {} levels", what, kMaxJsonDepth));
  }
  try {
    return Json::parse(text);
  } catch (const Json::parse_error& e) {
    return InvalidArgument(fmt::format("{}: malformed JSON at byte {}", what, e.byte));
  } catch (const Json::exception& e) {
    // Not a syntax error: a number too large for a double ("1e309") is
    // out_of_range. Found by hostile-input testing; it used to escape and
    // drop the connection without an answer.
    return InvalidArgument(
        fmt::format("{}: {}", what, e.id == 406 ? "a number is out of range" : "unreadable JSON"));
  }
}

std::string JsonTypeName(const Json& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return "a boolean";
  if (v.is_number_integer() || v.is_number_unsigned()) return "an integer";
  if (v.is_number()) return "a number";
  if (v.is_string()) return "a string";
  if (v.is_array()) return "an array";
  return "an object";
}

FieldReader::FieldReader(const Json& object, std::string path)
    : object_(object), path_(std::move(path)) {
  if (!object_.is_object()) {
    status_ = InvalidArgument(
        fmt::format("{}: expected an object, got {}", path_, JsonTypeName(object_)));
  }
}

bool FieldReader::has(const std::string& name) const {
  return object_.is_object() && object_.contains(name) && !object_.at(name).is_null();
}

void FieldReader::Fail(Status status) {
  if (status_.ok() && !status.ok()) status_ = std::move(status);
}

void FieldReader::FailField(const std::string& name, const std::string& message) {
  Fail(InvalidArgument(FieldPath(name) + ": " + message));
}

const Json* FieldReader::Find(const std::string& name, bool required) {
  known_.insert(name);
  if (!object_.is_object()) return nullptr;
  auto it = object_.find(name);
  if (it == object_.end() || it->is_null()) {
    if (required) FailField(name, "required field is missing");
    return nullptr;
  }
  return &*it;
}

void FieldReader::Ignore(const std::string& name) { known_.insert(name); }

void FieldReader::String(const std::string& name, std::string* out, bool required) {
  const Json* v = Find(name, required);
  if (v == nullptr) return;
  if (!v->is_string()) {
    FailField(name, "expected a string, got " + JsonTypeName(*v));
    return;
  }
  *out = v->get<std::string>();
  if (out->size() > 4096) FailField(name, "string longer than 4096 bytes");
}

void FieldReader::Number(const std::string& name, double* out, double min, double max,
                         bool required) {
  const Json* v = Find(name, required);
  if (v == nullptr) return;
  if (!v->is_number()) {
    FailField(name, "expected a number, got " + JsonTypeName(*v));
    return;
  }
  double d = v->get<double>();
  if (!std::isfinite(d) || d < min || d > max) {
    FailField(name, fmt::format("expected a number between {} and {}, got {}", min, max, d));
    return;
  }
  *out = d;
}

void FieldReader::OptionalNumber(const std::string& name, std::optional<double>* out, double min,
                                 double max) {
  if (!has(name)) {
    known_.insert(name);
    return;
  }
  double d = 0;
  Number(name, &d, min, max);
  if (ok()) *out = d;
}

void FieldReader::Int(const std::string& name, int64_t* out, int64_t min, int64_t max,
                      bool required) {
  const Json* v = Find(name, required);
  if (v == nullptr) return;
  bool integral = v->is_number_integer() || v->is_number_unsigned();
  if (v->is_number_float()) {
    double d = v->get<double>();
    integral = std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15;
  }
  if (!integral) {
    FailField(name, "expected an integer, got " + JsonTypeName(*v));
    return;
  }
  // Unsigned values above int64 range and floats are both range-checked as double.
  double d = v->get<double>();
  if (d < static_cast<double>(min) || d > static_cast<double>(max)) {
    FailField(name,
              fmt::format("expected an integer between {} and {}, got {}", min, max, v->dump()));
    return;
  }
  *out = v->is_number_float() ? static_cast<int64_t>(d) : v->get<int64_t>();
}

void FieldReader::Bool(const std::string& name, bool* out, bool required) {
  const Json* v = Find(name, required);
  if (v == nullptr) return;
  if (!v->is_boolean()) {
    FailField(name, "expected true or false, got " + JsonTypeName(*v));
    return;
  }
  *out = v->get<bool>();
}

void FieldReader::StringList(const std::string& name, std::vector<std::string>* out,
                             bool required) {
  const Json* v = Find(name, required);
  if (v == nullptr) return;
  if (!v->is_array()) {
    FailField(name, "expected an array of strings, got " + JsonTypeName(*v));
    return;
  }
  out->clear();
  for (size_t i = 0; i < v->size(); ++i) {
    if (!(*v)[i].is_string()) {
      FailField(fmt::format("{}[{}]", name, i), "expected a string, got " + JsonTypeName((*v)[i]));
      return;
    }
    out->push_back((*v)[i].get<std::string>());
  }
}

const Json* FieldReader::Object(const std::string& name, bool required) {
  const Json* v = Find(name, required);
  if (v != nullptr && !v->is_object()) {
    FailField(name, "expected an object, got " + JsonTypeName(*v));
    return nullptr;
  }
  return v;
}

const Json* FieldReader::Array(const std::string& name, bool required) {
  const Json* v = Find(name, required);
  if (v != nullptr && !v->is_array()) {
    FailField(name, "expected an array, got " + JsonTypeName(*v));
    return nullptr;
  }
  return v;
}

Status FieldReader::Finish() {
  if (!status_.ok()) return status_;
  for (auto it = object_.begin(); it != object_.end(); ++it) {
    if (known_.count(it.key()) == 0) {
      std::string accepted;
      for (const auto& k : known_) accepted += (accepted.empty() ? "" : ", ") + k;
      return InvalidArgument(
          fmt::format("{}: unknown field (accepted fields: {})", FieldPath(it.key()), accepted));
    }
  }
  return Status::Ok();
}

}  // namespace cpn
