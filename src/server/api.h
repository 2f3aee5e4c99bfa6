// Api: the versioned REST/JSON surface of a cpn server, as a pure function
// from HttpRequest to HttpResponse over a Platform.
//
// Routing, content-type and body checks, query parsing and the one error
// shape ({"error":{"code","message","status"}}) live here; what the requests
// mean lives in Platform. With an Authenticator, every request but /healthz
// needs a token, and every endpoint checks the caller's role and ownership
// (docs/security.md has the matrix): a role that may never do something gets
// 403; another tenant's job answers 404, exactly as a missing one, so ids
// leak nothing. Every change, and every change refused for want of
// permission, is written to the audit log. Without an Authenticator
// (cpn server --auth off) every caller acts as an operator. No sockets: tests
// call Handle() directly. Thread-safe (Platform and Authenticator are). See
// docs/api.md.
#pragma once

#include <atomic>
#include <cstdint>

#include "src/net/http.h"
#include "src/server/auth.h"
#include "src/server/platform.h"

namespace cpn {

class Api {
 public:
  explicit Api(Platform& platform, Authenticator* auth = nullptr)
      : platform_(platform), auth_(auth) {}
  net::HttpResponse Handle(const net::HttpRequest& req);
  // Mutual TLS for agents: a site's token is accepted only with a client
  // certificate (verified by the TLS server) whose common name is the site id.
  void set_require_site_certificates(bool on) { require_site_certs_ = on; }

 private:
  // What a request did, for the audit log: set by Route for every change.
  struct Audit {
    std::string action, object, rule;
    bool written = false;  // Route wrote it with the change itself
  };
  net::HttpResponse Route(const net::HttpRequest& req, const Principal& who, Audit* audit);
  net::HttpResponse Tokens(const net::HttpRequest& req, const std::vector<std::string>& parts,
                           const Principal& who, Audit* audit);

  Platform& platform_;
  Authenticator* auth_;
  bool require_site_certs_ = false;
  std::atomic<int64_t> requests_{0}, client_errors_{0}, server_errors_{0};
};

// A tenant's invoice and a provider's settlement for a month, from ledger
// lines (GET /v1/bills, /v1/statements).
Json BillToJson(const std::string& tenant, const std::string& month,
                const std::vector<LedgerEntry>& lines);
Json StatementToJson(const std::string& provider, const std::string& month,
                     const std::vector<LedgerEntry>& lines, int64_t fee_bps);

net::HttpResponse JsonResponse(int status, const Json& body);
net::HttpResponse ErrorResponse(const Status& status);
int HttpStatusFor(StatusCode code);

}  // namespace cpn
