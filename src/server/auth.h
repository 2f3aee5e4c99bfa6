// Auth: who is calling (API tokens) and how often they may (rate limits).
//
// Four roles: operators run the platform; providers manage their own sites
// and prices; tenants run their own jobs and read their own bills, through
// users who each hold tokens; a site's agent acts as its site. A token is a
// random 256-bit secret ("cpn_" + 64 hex digits), shown once when issued;
// the store keeps only its SHA-256, so a stolen database yields no usable
// token. Tokens can expire and be revoked; a revoked or expired token is
// refused exactly as an unknown one. Every token has a request budget (a
// token bucket: `rate_per_s` sustained, `burst` at once); operators and
// sites are not limited, since the platform's own traffic must not be
// throttled by it. Thread-safe.
#pragma once

#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "src/core/clock.h"
#include "src/core/status.h"
#include "src/store/store.h"

namespace cpn {

enum class Role { kOperator, kProvider, kTenant, kSite };
std::string_view RoleName(Role r);
Result<Role> ParseRole(std::string_view name);

struct Principal {
  Role role = Role::kTenant;
  std::string subject;  // provider id, tenant name or site id; "" for operators
  std::string user;
  std::string token_id;
  // "tenant:bj-health/alice", "operator:root": for audit lines.
  std::string Name() const;
};

struct RateLimit {
  double rate_per_s = 50;  // sustained requests per second per token
  double burst = 100;      // requests at once
};

class Authenticator {
 public:
  Authenticator(Store& store, const Clock& clock, RateLimit limit = {});

  // Reads every token from the store; call once before serving.
  Status Load();

  struct Issued {
    TokenRecord record;
    std::string secret;  // the only time it exists outside its holder
  };
  // A new token for `role`/`subject` (validated: a provider id, a site id,
  // a tenant name; empty for operators); ttl_ms 0 never expires.
  Result<Issued> Issue(Role role, const std::string& subject, const std::string& user,
                       int64_t ttl_ms);
  // The principal behind an "Authorization: Bearer cpn_..." header value.
  // Unauthenticated, with the reason, for a missing, malformed, unknown,
  // expired or revoked token.
  Result<Principal> Verify(std::string_view authorization) const;
  Status Revoke(const std::string& token_id);
  std::optional<TokenRecord> Find(const std::string& token_id) const;
  std::vector<TokenRecord> List() const;
  // nullopt if the request may go ahead, else the seconds to wait
  // (Retry-After) before the token has a request to spend.
  std::optional<int64_t> Throttle(const Principal& p);

 private:
  Store& store_;
  const Clock& clock_;
  RateLimit limit_;
  mutable std::mutex mu_;
  std::map<std::string, TokenRecord> by_hash_;
  std::map<std::string, std::string> hash_by_id_;
  struct Bucket {
    double tokens = 0;
    int64_t at_ms = 0;
  };
  std::map<std::string, Bucket> buckets_;  // by token id
};

// SHA-256 of `data`, 64 hex digits.
std::string Sha256Hex(std::string_view data);

}  // namespace cpn
