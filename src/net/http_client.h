// HttpClient: blocking HTTP/1.1 requests to a cpn server (CLI and agent).
//
// Keeps its connection open between requests (HTTP/1.1 keep-alive), with a
// connect+I/O timeout per request. A kept connection the server has closed
// meanwhile (idle timeout, restart) is replaced once, transparently, when
// the failure shows the request was not received. Failures to reach the
// server come back as Unavailable with the address in the message; any HTTP
// status is a successful exchange (the caller reads status and body).
// Thread-compatible: use one client per thread or guard it; a copy opens
// its own connection.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "src/core/status.h"
#include "src/net/http.h"

namespace cpn::net {

// TLS files of a client: the CA certificates to check the server with
// (empty: the system's), and an optional client certificate and key for a
// server that asks for one (mutual TLS).
struct HttpClientTls {
  std::string ca_file, cert_file, key_file;
};

class HttpClient {
 public:
  // `base_url`: "http://host:port" or "https://host:port" (no path). Over
  // https the server's certificate is checked against the CA and its name.
  static Result<HttpClient> Create(const std::string& base_url, int timeout_ms = 10'000);

  Result<HttpResponse> Send(const std::string& method, const std::string& target,
                            const std::string& body = "",
                            const std::string& content_type = "application/json",
                            const std::map<std::string, std::string>& headers = {}) const;
  const std::string& base_url() const { return base_url_; }
  // Sent with every request as "Authorization: Bearer <token>"; "" sends none.
  void set_bearer_token(std::string token) { token_ = std::move(token); }
  void set_tls(HttpClientTls tls) {
    tls_files_ = std::move(tls);
    connection_.reset();
  }

  HttpClient() = default;
  HttpClient(const HttpClient& other)
      : base_url_(other.base_url_),
        host_(other.host_),
        port_(other.port_),
        token_(other.token_),
        https_(other.https_),
        tls_files_(other.tls_files_),
        timeout_ms_(other.timeout_ms_) {}
  HttpClient& operator=(const HttpClient& other) {
    if (this != &other) {
      base_url_ = other.base_url_;
      host_ = other.host_;
      port_ = other.port_;
      token_ = other.token_;
      https_ = other.https_;
      tls_files_ = other.tls_files_;
      timeout_ms_ = other.timeout_ms_;
      connection_.reset();
    }
    return *this;
  }
  HttpClient(HttpClient&&) = default;
  HttpClient& operator=(HttpClient&&) = default;
  ~HttpClient();

 private:
  struct Connection;
  std::string base_url_, host_, port_, token_;
  bool https_ = false;
  HttpClientTls tls_files_;
  int timeout_ms_ = 10'000;
  mutable std::shared_ptr<Connection> connection_;
};

}  // namespace cpn::net
