// HttpServer: a small HTTP/1.1 server on Boost.Beast that hands each request
// to one handler function.
//
// It owns a listener thread and a pool of threads, each running the event
// loop of the connections it was given (the one with fewest gets the next);
// the handler is called on those threads concurrently and must be
// thread-safe. Limits that protect the
// server: header size (16 KiB), body size (configurable, 413 beyond it),
// and an idle/read timeout per connection, so a slow or silent client cannot
// hold a connection forever. Start() binds (port 0 picks a free port) and
// returns the bound port; Stop() closes the listener and joins the threads.
// Optionally TLS, with optional client certificates (mutual TLS).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "src/core/status.h"
#include "src/net/http.h"

namespace cpn::net {

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

struct HttpServerOptions {
  std::string address = "127.0.0.1";
  uint16_t port = 0;
  // Some handlers block their thread (an agent's report waits for its
  // write to reach the disk; a submission does not, see
  // HttpResponse::send_after), so there are more threads than cores, but few
  // enough that two cores do not spend their time switching between them.
  // A thread's connections wait for each other's blocking handlers.
  // 0: six per core, at least eight.
  int threads = 0;
  uint64_t max_body_bytes = 1 << 20;
  int read_timeout_s = 30;
  // TLS (1.2 or later) with this certificate chain and key (PEM); both
  // empty: plain HTTP. With a client CA, clients may present a certificate:
  // one that does not verify against it ends the handshake; one that does
  // reaches the handler as HttpRequest::client_cert_cn.
  std::string tls_cert_file, tls_key_file, tls_client_ca_file;
};

class HttpServer {
 public:
  HttpServer(HttpServerOptions options, HttpHandler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts serving; returns the bound port.
  Result<uint16_t> Start();
  void Stop();

  struct Impl;  // defined in http_server.cc; public only for its coroutines

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace cpn::net
