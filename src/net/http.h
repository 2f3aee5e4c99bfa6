// Plain HTTP request and response values shared by the server, the client and
// the API router. They carry no Boost types, so code that handles requests
// (the API, tests) never includes Beast or Asio; only http_server.cc and
// http_client.cc do (and http_parse.cc, for the parser alone).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "src/core/status.h"

namespace cpn::net {

struct HttpRequest {
  std::string method;                          // "GET", "POST", ...
  std::string target;                          // path and query, as sent
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  std::string peer;  // "127.0.0.1:53122"
  // Over TLS with a client certificate the server verified against its
  // client CA: the certificate's common name; "" otherwise.
  std::string client_cert_cn;
  // For long polls: false once the server has stopped waiting.
  bool may_wait = true;

  std::string Header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? "" : it->second;
  }
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::map<std::string, std::string> headers;
  // A handler that has nothing yet for a long poll sets this to how long the
  // client asked to wait; the server calls it again until then.
  int64_t wait_up_to_ms = 0;
  // Set by a handler whose answer may go out only once work elsewhere is
  // done (a submission's disk sync), so that its thread need not wait: the
  // server calls it with a function for that work to call when done, on any
  // thread, and then sends this response, or the one passed to that
  // function instead (the work failed).
  std::function<void(std::function<void(std::optional<HttpResponse>)>)> send_after;
};

// Parses one complete HTTP/1.1 request from `wire` exactly as the server
// reads requests off a connection (16 KiB of headers, `max_body_bytes` of
// body): the request, or why it would be refused — ResourceExhausted for a
// header or body over its limit, InvalidArgument for anything malformed or
// incomplete. For tests and fuzzing of the server's input path.
Result<HttpRequest> ParseHttpRequest(std::string_view wire, uint64_t max_body_bytes = 1 << 20);

// For callers without the server's event loop (tests, fuzzers): waits for
// `r.send_after`'s work, blocking, and returns what the server would send.
HttpResponse AwaitSendAfter(HttpResponse r);

// Splits "/v1/jobs?limit=5&state=running" into path and decoded query params.
std::string PathOf(const std::string& target);
std::map<std::string, std::string> QueryOf(const std::string& target);
std::string UrlEncode(const std::string& s);
std::string UrlDecode(const std::string& s);

}  // namespace cpn::net
