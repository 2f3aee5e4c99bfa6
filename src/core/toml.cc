#include "src/core/toml.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstdlib>

namespace cpn {
namespace {

class LineParser {
 public:
  LineParser(const std::string& s, size_t pos) : s_(s), pos_(pos) {}

  void SkipSpace() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t')) ++pos_;
  }
  bool AtEndOrComment() {
    SkipSpace();
    return pos_ >= s_.size() || s_[pos_] == '#';
  }

  // Returns an error message, or empty on success.
  std::string Value(Json* out) {
    SkipSpace();
    if (pos_ >= s_.size()) return "missing value after '='";
    char c = s_[pos_];
    if (c == '"') return BasicString(out);
    if (c == '\'') {
      size_t end = s_.find('\'', pos_ + 1);
      if (end == std::string::npos) return "unterminated literal string";
      *out = s_.substr(pos_ + 1, end - pos_ - 1);
      pos_ = end + 1;
      return "";
    }
    if (c == '[') return ArrayValue(out);
    if (s_.compare(pos_, 4, "true") == 0) {
      *out = true;
      pos_ += 4;
      return "";
    }
    if (s_.compare(pos_, 5, "false") == 0) {
      *out = false;
      pos_ += 5;
      return "";
    }
    return NumberValue(out);
  }

  size_t pos() const { return pos_; }

 private:
  std::string BasicString(Json* out) {
    std::string v;
    for (size_t i = pos_ + 1; i < s_.size(); ++i) {
      char c = s_[i];
      if (c == '"') {
        *out = v;
        pos_ = i + 1;
        return "";
      }
      if (c == '\\') {
        if (++i >= s_.size()) break;
        switch (s_[i]) {
          case 'n':
            v += '\n';
            break;
          case 't':
            v += '\t';
            break;
          case '"':
            v += '"';
            break;
          case '\\':
            v += '\\';
            break;
          default:
            return fmt::format("unsupported escape '\\{}' in string", s_[i]);
        }
        continue;
      }
      v += c;
    }
    return "unterminated string (multi-line strings are not supported)";
  }

  std::string ArrayValue(Json* out) {
    // Nesting is recursion: bounded, so a hostile file cannot overflow the
    // stack (found by fuzzing the agent's config).
    if (++depth_ > kMaxArrayDepth) {
      return fmt::format("arrays nested more than {} deep", kMaxArrayDepth);
    }
    *out = Json::array();
    ++pos_;
    while (true) {
      SkipSpace();
      if (pos_ >= s_.size()) return "unterminated array (arrays must fit on one line)";
      if (s_[pos_] == ']') {
        ++pos_;
        --depth_;
        return "";
      }
      Json item;
      if (auto e = Value(&item); !e.empty()) return e;
      out->push_back(item);
      SkipSpace();
      if (pos_ < s_.size() && s_[pos_] == ',')
        ++pos_;
      else if (pos_ < s_.size() && s_[pos_] != ']')
        return "expected ',' or ']' in array";
    }
  }

  std::string NumberValue(Json* out) {
    size_t start = pos_;
    while (pos_ < s_.size() &&
           std::string_view("+-0123456789._eE").find(s_[pos_]) != std::string_view::npos) {
      ++pos_;
    }
    std::string tok = s_.substr(start, pos_ - start);
    std::string clean;
    for (char c : tok) {
      if (c != '_') clean += c;
    }
    if (clean.empty()) return "expected a value (string, number, boolean or array)";
    errno = 0;
    char* end = nullptr;
    bool is_float = clean.find_first_of(".eE") != std::string::npos;
    if (is_float) {
      double d = std::strtod(clean.c_str(), &end);
      if (*end != '\0' || errno != 0) return "'" + tok + "' is not a number";
      *out = d;
    } else {
      long long v = std::strtoll(clean.c_str(), &end, 10);
      if (*end != '\0' || errno != 0) return "'" + tok + "' is not an integer";
      *out = static_cast<int64_t>(v);
    }
    return "";
  }

  static constexpr int kMaxArrayDepth = 32;
  const std::string& s_;
  size_t pos_;
  int depth_ = 0;
};

bool IsBareKeyChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

}  // namespace

Status TomlDocument::Locate(const Status& error, const std::string& file) const {
  if (error.ok()) return error;
  const std::string& msg = error.message();
  std::string path = msg.substr(0, msg.find(':'));
  // The longest known key path that prefixes the failing path.
  while (!path.empty()) {
    auto it = lines.find(path);
    if (it != lines.end()) {
      return Status(error.code(), fmt::format("{}:{}: {}", file, it->second, msg));
    }
    size_t cut = path.find_last_of(".[");
    if (cut == std::string::npos) break;
    path = path.substr(0, cut);
  }
  return Status(error.code(), file + ": " + msg);
}

Result<TomlDocument> ParseToml(const std::string& text, const std::string& file) {
  TomlDocument doc;
  Json* table = &doc.root;
  std::string prefix;
  int line_no = 0;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    ++line_no;
    start = end + 1;
    auto fail = [&](const std::string& why) {
      return InvalidArgument(fmt::format("{}:{}: {}", file, line_no, why));
    };
    LineParser p(line, 0);
    if (p.AtEndOrComment()) {
      if (end == text.size()) break;
      continue;
    }
    size_t i = p.pos();
    if (line[i] == '[') {
      bool array = i + 1 < line.size() && line[i + 1] == '[';
      size_t name_start = i + (array ? 2 : 1);
      size_t close = line.find(array ? "]]" : "]", name_start);
      if (close == std::string::npos) return fail("unterminated table header");
      std::string name = line.substr(name_start, close - name_start);
      while (!name.empty() && name.front() == ' ') name.erase(0, 1);
      while (!name.empty() && name.back() == ' ') name.pop_back();
      if (name.empty()) return fail("empty table name");
      for (char c : name) {
        if (!IsBareKeyChar(c)) return fail("table name '" + name + "' must be a bare key");
      }
      LineParser rest(line, close + (array ? 2 : 1));
      if (!rest.AtEndOrComment()) return fail("unexpected text after table header");
      if (array) {
        Json& arr = doc.root[name];
        if (arr.is_null()) arr = Json::array();
        if (!arr.is_array()) return fail("'" + name + "' is already a table, not an array");
        arr.push_back(Json::object());
        table = &arr.back();
        prefix = fmt::format("{}[{}]", name, arr.size() - 1);
      } else {
        if (doc.root.contains(name)) return fail("table '" + name + "' defined twice");
        doc.root[name] = Json::object();
        table = &doc.root[name];
        prefix = name;
      }
      doc.lines[prefix] = line_no;
    } else {
      size_t k = i;
      while (k < line.size() && IsBareKeyChar(line[k])) ++k;
      std::string key = line.substr(i, k - i);
      if (key.empty()) return fail("expected a key, '[table]' or a comment");
      LineParser after(line, k);
      after.SkipSpace();
      if (after.pos() >= line.size() || line[after.pos()] != '=') {
        return fail("expected '=' after key '" + key + "'");
      }
      LineParser vp(line, after.pos() + 1);
      Json value;
      if (auto e = vp.Value(&value); !e.empty()) return fail(e);
      if (!vp.AtEndOrComment()) return fail("unexpected text after the value of '" + key + "'");
      if (table->contains(key)) return fail("key '" + key + "' defined twice");
      (*table)[key] = value;
      doc.lines[prefix.empty() ? key : prefix + "." + key] = line_no;
    }
    if (end == text.size()) break;
  }
  return doc;
}

}  // namespace cpn
