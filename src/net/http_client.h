// HttpClient: blocking HTTP/1.1 requests to a cpn server (CLI and agent).
//
// One connection per request, with a connect+I/O timeout. Failures to reach
// the server come back as Unavailable with the address in the message; any
// HTTP status is a successful exchange (the caller reads status and body).
// Thread-compatible: use one client per thread or guard it.
#pragma once

#include <map>
#include <string>

#include "src/core/status.h"
#include "src/net/http.h"

namespace cpn::net {

class HttpClient {
 public:
  // `base_url`: "http://host:port" (no path).
  static Result<HttpClient> Create(const std::string& base_url, int timeout_ms = 10'000);

  Result<HttpResponse> Send(const std::string& method, const std::string& target,
                            const std::string& body = "",
                            const std::string& content_type = "application/json",
                            const std::map<std::string, std::string>& headers = {}) const;
  const std::string& base_url() const { return base_url_; }

 private:
  std::string base_url_, host_, port_;
  int timeout_ms_ = 10'000;
};

}  // namespace cpn::net
