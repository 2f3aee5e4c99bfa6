// Api: the versioned REST/JSON surface of a cpn server, as a pure function
// from HttpRequest to HttpResponse over a Platform.
//
// Routing, content-type and body checks, query parsing and the one error
// shape ({"error":{"code","message","status"}}) live here; what the requests
// mean lives in Platform. No sockets: tests call Handle() directly. Thread-safe
// (Platform is). See docs/api.md for every endpoint.
#pragma once

#include <atomic>
#include <cstdint>

#include "src/net/http.h"
#include "src/server/platform.h"

namespace cpn {

class Api {
 public:
  explicit Api(Platform& platform) : platform_(platform) {}
  net::HttpResponse Handle(const net::HttpRequest& req);

 private:
  net::HttpResponse Route(const net::HttpRequest& req);

  Platform& platform_;
  std::atomic<int64_t> requests_{0}, client_errors_{0}, server_errors_{0};
};

net::HttpResponse JsonResponse(int status, const Json& body);
net::HttpResponse ErrorResponse(const Status& status);
int HttpStatusFor(StatusCode code);

}  // namespace cpn
