#include "src/core/ids.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <vector>

namespace cpn {
namespace {

std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    size_t pos = s.find(sep, start);
    parts.push_back(s.substr(start, pos == std::string_view::npos ? pos : pos - start));
    if (pos == std::string_view::npos) break;
    start = pos + 1;
  }
  return parts;
}

}  // namespace

bool IsValidLabel(std::string_view label) {
  if (label.empty() || label.size() > 63) return false;
  for (size_t i = 0; i < label.size(); ++i) {
    char c = label[i];
    bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!alnum && !(c == '-' && i > 0)) return false;
  }
  return true;
}

std::string ResourceId::ToString() const {
  std::string s = "cpn:" + node + "/" + provider;
  if (!site.empty()) s += "/" + site;
  if (!pool.empty()) s += "/" + pool;
  return s;
}

std::string ResourceId::SiteId() const { return "cpn:" + node + "/" + provider + "/" + site; }
std::string ResourceId::ProviderId() const { return "cpn:" + node + "/" + provider; }

Result<ResourceId> ParseResourceId(std::string_view text, std::string_view what) {
  auto bad = [&](std::string_view why) {
    return InvalidArgument(fmt::format(
        "{}: '{}' is not a cpn id ({}); expected cpn:<node>/<provider>/<site>[/<pool>], "
        "e.g. cpn:cn.nx/zwcloud/zw-01/ascend-910b",
        what, text.substr(0, 200), why));
  };
  if (text.size() > 255) return bad("longer than 255 characters");
  if (text.substr(0, 4) != "cpn:") return bad("missing 'cpn:' prefix");
  auto parts = Split(text.substr(4), '/');
  if (parts.size() < 2 || parts.size() > 4) return bad("wrong number of '/'-separated parts");
  for (auto label : Split(parts[0], '.')) {
    if (!IsValidLabel(label)) return bad("node must be dot-separated labels of [a-z0-9-]");
  }
  for (size_t i = 1; i < parts.size(); ++i) {
    if (!IsValidLabel(parts[i])) return bad("each part must be 1-63 characters of [a-z0-9-]");
  }
  ResourceId id;
  id.node = std::string(parts[0]);
  id.provider = std::string(parts[1]);
  if (parts.size() > 2) id.site = std::string(parts[2]);
  if (parts.size() > 3) id.pool = std::string(parts[3]);
  return id;
}

Status ValidateSiteId(std::string_view text, std::string_view what) {
  auto id = ParseResourceId(text, what);
  if (!id.ok()) return id.status();
  if (!id->is_site()) {
    return InvalidArgument(
        fmt::format("{}: '{}' is not a site id (cpn:<node>/<provider>/<site>)", what, text));
  }
  return Status::Ok();
}

Status ValidatePoolId(std::string_view text, std::string_view what) {
  auto id = ParseResourceId(text, what);
  if (!id.ok()) return id.status();
  if (!id->is_pool()) {
    return InvalidArgument(
        fmt::format("{}: '{}' is not a pool id (cpn:<node>/<provider>/<site>/<pool>)", what, text));
  }
  return Status::Ok();
}

bool IsValidJobId(std::string_view text) {
  if (text.size() != 16 || text.substr(0, 4) != "job-") return false;
  for (char c : text.substr(4)) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::optional<uint64_t> JobIdNumber(std::string_view text) {
  if (!IsValidJobId(text)) return std::nullopt;
  uint64_t n = 0;
  std::from_chars(text.data() + 4, text.data() + text.size(), n, 16);
  return n;
}

std::string JobIdSequence::Next(int64_t now_ms) {
  constexpr uint64_t kMax = (uint64_t{1} << 48) - 1;
  const uint64_t from_clock = static_cast<uint64_t>(std::max<int64_t>(now_ms, 0) / 1000) << 16;
  std::lock_guard lock(mu_);
  // Past the 48-bit range only if a store holds an id within a few of the
  // top (the clock alone reaches it in 2106): start again from the clock
  // rather than issue an invalid id; a collision is then refused by the store.
  last_ = last_ >= kMax ? from_clock : std::max(last_ + 1, from_clock);
  return fmt::format("job-{:012x}", last_ & kMax);
}

}  // namespace cpn
