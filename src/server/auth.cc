#include "src/server/auth.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cmath>

#include "src/core/ids.h"
#include "src/core/job_spec.h"

namespace cpn {

namespace {

constexpr std::string_view kTokenPrefix = "cpn_";

std::string Hex(const unsigned char* data, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string out(n * 2, '0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = digits[data[i] >> 4];
    out[2 * i + 1] = digits[data[i] & 15];
  }
  return out;
}

bool IsValidUser(const std::string& user) {
  if (user.empty() || user.size() > 128) return false;
  return std::all_of(user.begin(), user.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-' ||
           c == '@';
  });
}

}  // namespace

std::string Sha256Hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), md, &n, EVP_sha256(), nullptr);
  return Hex(md, n);
}

std::string_view RoleName(Role r) {
  switch (r) {
    case Role::kOperator:
      return "operator";
    case Role::kProvider:
      return "provider";
    case Role::kTenant:
      return "tenant";
    case Role::kSite:
      return "site";
  }
  return "tenant";
}

Result<Role> ParseRole(std::string_view name) {
  for (Role r : {Role::kOperator, Role::kProvider, Role::kTenant, Role::kSite}) {
    if (RoleName(r) == name) return r;
  }
  return InvalidArgument("role: expected operator, provider, tenant or site, got '" +
                         std::string(name.substr(0, 32)) + "'");
}

std::string Principal::Name() const {
  std::string out(RoleName(role));
  out += ":" + (subject.empty() ? std::string("-") : subject);
  if (!user.empty()) out += "/" + user;
  return out;
}

Authenticator::Authenticator(Store& store, const Clock& clock, RateLimit limit)
    : store_(store), clock_(clock), limit_(limit) {}

Status Authenticator::Load() {
  auto all = store_.ListTokens();
  if (!all.ok()) return all.status();
  std::lock_guard lock(mu_);
  by_hash_.clear();
  hash_by_id_.clear();
  for (auto& t : *all) {
    hash_by_id_[t.id] = t.hash;
    by_hash_[t.hash] = std::move(t);
  }
  return Status::Ok();
}

Result<Authenticator::Issued> Authenticator::Issue(Role role, const std::string& subject,
                                                   const std::string& user, int64_t ttl_ms) {
  switch (role) {
    case Role::kOperator:
      if (!subject.empty()) return InvalidArgument("subject: operators have none");
      break;
    case Role::kProvider: {
      auto id = ParseResourceId(subject, "subject");
      if (!id.ok()) return id.status();
      if (!id->is_provider()) {
        return InvalidArgument(
            "subject: a provider token names a provider id, "
            "cpn:<node>/<provider>");
      }
      break;
    }
    case Role::kSite:
      CPN_RETURN_IF_ERROR(ValidateSiteId(subject, "subject"));
      break;
    case Role::kTenant:
      if (!IsValidName(subject)) {
        return InvalidArgument("subject: a tenant name, 1-128 characters of [A-Za-z0-9._-]");
      }
      break;
  }
  if (!user.empty() && !IsValidUser(user)) {
    return InvalidArgument("user: 1-128 characters of [A-Za-z0-9._@-]");
  }
  if (ttl_ms < 0) return InvalidArgument("ttl: must not be negative");
  unsigned char raw[32];
  if (RAND_bytes(raw, sizeof raw) != 1) return Internal("no randomness for a token");
  Issued out;
  out.secret = std::string(kTokenPrefix) + Hex(raw, sizeof raw);
  TokenRecord& t = out.record;
  t.hash = Sha256Hex(out.secret);
  t.id = "tok-" + t.hash.substr(0, 12);
  t.role = std::string(RoleName(role));
  t.subject = subject;
  t.user = user;
  t.created_ms = clock_.NowMs();
  t.expires_ms = ttl_ms > 0 ? t.created_ms + ttl_ms : 0;
  CPN_RETURN_IF_ERROR(store_.PutToken(t));
  std::lock_guard lock(mu_);
  hash_by_id_[t.id] = t.hash;
  by_hash_[t.hash] = t;
  return out;
}

Result<Principal> Authenticator::Verify(std::string_view authorization) const {
  constexpr std::string_view kBearer = "Bearer ";
  if (authorization.empty()) {
    return Unauthenticated(
        "this endpoint needs a token: send 'Authorization: Bearer cpn_...' "
        "(cpn reads CPN_TOKEN or --token-file)");
  }
  if (authorization.substr(0, kBearer.size()) != kBearer) {
    return Unauthenticated("Authorization must be 'Bearer <token>'");
  }
  std::string_view secret = authorization.substr(kBearer.size());
  if (secret.size() != kTokenPrefix.size() + 64 || secret.substr(0, 4) != kTokenPrefix) {
    return Unauthenticated("malformed token (expected cpn_ and 64 hex digits)");
  }
  const std::string hash = Sha256Hex(secret);
  std::lock_guard lock(mu_);
  auto it = by_hash_.find(hash);
  // Unknown, revoked and expired read alike: the reply says nothing about
  // which tokens exist.
  const int64_t now = clock_.NowMs();
  if (it == by_hash_.end() || it->second.revoked_ms != 0 ||
      (it->second.expires_ms != 0 && it->second.expires_ms <= now)) {
    return Unauthenticated("invalid, expired or revoked token");
  }
  const TokenRecord& t = it->second;
  Principal p;
  p.role = ParseRole(t.role).value();
  p.subject = t.subject;
  p.user = t.user;
  p.token_id = t.id;
  return p;
}

Status Authenticator::Revoke(const std::string& token_id) {
  TokenRecord t;
  {
    std::lock_guard lock(mu_);
    auto h = hash_by_id_.find(token_id);
    if (h == hash_by_id_.end()) return NotFound("no token " + token_id.substr(0, 64));
    t = by_hash_.at(h->second);
  }
  if (t.revoked_ms != 0) return Status::Ok();
  t.revoked_ms = clock_.NowMs();
  CPN_RETURN_IF_ERROR(store_.PutToken(t));
  std::lock_guard lock(mu_);
  by_hash_[t.hash] = t;
  return Status::Ok();
}

std::optional<TokenRecord> Authenticator::Find(const std::string& token_id) const {
  std::lock_guard lock(mu_);
  auto h = hash_by_id_.find(token_id);
  if (h == hash_by_id_.end()) return std::nullopt;
  return by_hash_.at(h->second);
}

std::vector<TokenRecord> Authenticator::List() const {
  std::lock_guard lock(mu_);
  std::vector<TokenRecord> out;
  for (const auto& [id, hash] : hash_by_id_) out.push_back(by_hash_.at(hash));
  return out;
}

std::optional<int64_t> Authenticator::Throttle(const Principal& p) {
  if (p.role == Role::kOperator || p.role == Role::kSite) return std::nullopt;
  if (limit_.rate_per_s <= 0) return std::nullopt;
  const int64_t now = clock_.NowMs();
  std::lock_guard lock(mu_);
  auto [it, fresh] = buckets_.try_emplace(p.token_id);
  Bucket& b = it->second;
  if (fresh) {
    b.tokens = limit_.burst;
  } else {
    b.tokens = std::min(
        limit_.burst, b.tokens + (static_cast<double>(now - b.at_ms) / 1000.0) * limit_.rate_per_s);
  }
  b.at_ms = now;
  if (b.tokens >= 1) {
    b.tokens -= 1;
    return std::nullopt;
  }
  return static_cast<int64_t>(std::ceil((1 - b.tokens) / limit_.rate_per_s));
}

}  // namespace cpn
