// Resource identifiers: cpn:<node>/<provider>/<site>[/<pool>].
//
// Every provider, site and pool in the network has one of these, issued by the
// node (national or regional cpn server) it registers with; see
// docs/identifiers.md. An id is resolvable upward: its <node> part names the
// regional node that holds it. Ids are validated on every input and never
// reused. Job ids are separate: "job-" followed by 12 lowercase hex digits,
// issued in increasing order by JobIdSequence. Plain values are
// thread-compatible; JobIdSequence is thread-safe.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "src/core/status.h"

namespace cpn {

struct ResourceId {
  std::string node;      // "cn.nx": dot-separated labels, first is the country
  std::string provider;  // "zwcloud"
  std::string site;      // "zw-01"; empty for a provider id
  std::string pool;      // "ascend-910b"; empty for a site id

  std::string ToString() const;
  std::string SiteId() const;      // drops the pool part
  std::string ProviderId() const;  // cpn:<node>/<provider>
  bool is_provider() const { return site.empty(); }
  bool is_site() const { return !site.empty() && pool.empty(); }
  bool is_pool() const { return !pool.empty(); }
};

// Parses and validates an id of any level; `what` names it in messages.
Result<ResourceId> ParseResourceId(std::string_view text, std::string_view what = "id");
// Validates a site id (exactly node/provider/site).
Status ValidateSiteId(std::string_view text, std::string_view what = "site");
Status ValidatePoolId(std::string_view text, std::string_view what = "pool");
// A label: 1..63 of [a-z0-9-], starting with a letter or digit.
bool IsValidLabel(std::string_view label);
bool IsValidJobId(std::string_view text);
// The 48-bit number of a valid job id.
std::optional<uint64_t> JobIdNumber(std::string_view text);

// Issues job ids in increasing order: the number is the Unix second times
// 65,536 plus a count within that second. Ids sort by submission time, so
// a new job's rows append to the end of every index keyed by its id instead
// of landing on a random page (random ids dirtied one more page per index
// per job, and could collide: about 1 in 500 at a million jobs). Seeded with
// the greatest id already stored, it never repeats one, even if the clock
// goes back; a burst over 65,536 a second borrows from the next second.
class JobIdSequence {
 public:
  explicit JobIdSequence(uint64_t after = 0) : last_(after) {}
  std::string Next(int64_t now_ms);

 private:
  std::mutex mu_;
  uint64_t last_;
};

}  // namespace cpn
