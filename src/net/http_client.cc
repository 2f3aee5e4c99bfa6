#include "src/net/http_client.h"

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <exception>
#include <optional>
#include <utility>  // before Asio: g++ 12 + C++20 awaitable.hpp needs std::exchange

namespace cpn::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
namespace ssl = asio::ssl;

Result<HttpClient> HttpClient::Create(const std::string& base_url, int timeout_ms) {
  const bool https = base_url.rfind("https://", 0) == 0;
  const std::string prefix = https ? "https://" : "http://";
  if (base_url.rfind(prefix, 0) != 0) {
    return InvalidArgument("server address '" + base_url +
                           "' must look like http://HOST:PORT or https://HOST:PORT");
  }
  std::string rest = base_url.substr(prefix.size());
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  size_t colon = rest.rfind(':');
  if (colon == std::string::npos || colon == 0 || rest.find('/') != std::string::npos) {
    return InvalidArgument("server address '" + base_url + "' must look like http://HOST:PORT");
  }
  HttpClient c;
  c.host_ = rest.substr(0, colon);
  c.port_ = rest.substr(colon + 1);
  if (c.port_.empty() || c.port_.find_first_not_of("0123456789") != std::string::npos) {
    return InvalidArgument("server address '" + base_url + "' has a bad port");
  }
  c.base_url_ = prefix + rest;
  c.https_ = https;
  c.timeout_ms_ = timeout_ms;
  return c;
}

struct HttpClient::Connection {
  asio::io_context ioc;
  std::optional<ssl::context> tls_context;
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls;
  beast::flat_buffer buffer;
  bool open = false;
  std::chrono::steady_clock::time_point last_used;

  beast::tcp_stream& lowest() { return tls ? beast::get_lowest_layer(*tls) : *plain; }
  void Close() {
    beast::error_code ignored;
    if (tls || plain) lowest().socket().close(ignored);
    open = false;
  }
};

namespace {

Result<ssl::context> ClientTlsContext(const HttpClientTls& files) {
  ssl::context ctx(ssl::context::tls_client);
  beast::error_code ec;
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                  ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  ctx.set_verify_mode(ssl::verify_peer, ec);
  if (files.ca_file.empty()) {
    ctx.set_default_verify_paths(ec);
  } else {
    ctx.load_verify_file(files.ca_file, ec);
    if (ec) return InvalidArgument("TLS: cannot load CA " + files.ca_file + ": " + ec.message());
  }
  if (!files.cert_file.empty()) {
    ctx.use_certificate_chain_file(files.cert_file, ec);
    if (!ec) ctx.use_private_key_file(files.key_file, ssl::context::pem, ec);
    if (ec) {
      return InvalidArgument("TLS: cannot load client certificate " + files.cert_file +
                             " and key " + files.key_file + ": " + ec.message());
    }
  }
  return ctx;
}

}  // namespace

HttpClient::~HttpClient() = default;

Result<HttpResponse> HttpClient::Send(const std::string& method, const std::string& target,
                                      const std::string& body, const std::string& content_type,
                                      const std::map<std::string, std::string>& headers) const {
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, host_);
  req.set(http::field::user_agent, "cpn");
  if (!token_.empty()) req.set(http::field::authorization, "Bearer " + token_);
  for (const auto& [name, value] : headers) req.set(name, value);
  if (!body.empty() || method == "POST" || method == "PUT") {
    req.set(http::field::content_type, content_type);
    req.body() = body;
  }
  req.keep_alive(true);
  req.prepare_payload();
  if (connection_ == nullptr) {
    auto fresh = std::make_shared<Connection>();
    if (https_) {
      auto ctx = ClientTlsContext(tls_files_);
      if (!ctx.ok()) return ctx.status();
      fresh->tls_context.emplace(std::move(ctx).value());
    }
    connection_ = std::move(fresh);
  }
  Connection& conn = *connection_;
  // The server closes connections idle for 30 s; do not offer it one that
  // old (the request could cross its close).
  if (conn.open && std::chrono::steady_clock::now() - conn.last_used > std::chrono::seconds(20)) {
    conn.Close();
  }
  std::optional<http::response_parser<http::string_body>> parser;
  beast::error_code error;
  for (int attempt = 0; attempt < 2; ++attempt) {
    const bool reused = conn.open;
    bool sent = false;      // the request was written out
    bool answered = false;  // some of the response arrived
    parser.emplace();
    parser->body_limit(256ull << 20);
    parser->header_limit(64 * 1024);
    error = {};
    conn.ioc.restart();
    asio::co_spawn(
        conn.ioc,
        [&]() -> asio::awaitable<void> {
          if (!conn.open) {
            conn.buffer.clear();
            if (conn.tls_context) {
              conn.plain.reset();
              conn.tls.emplace(conn.ioc, *conn.tls_context);
              // SNI, and the certificate must name the host connected to.
              SSL_set_tlsext_host_name(conn.tls->native_handle(), host_.c_str());
              conn.tls->set_verify_callback(ssl::host_name_verification(host_));
            } else {
              conn.plain.emplace(conn.ioc);
            }
            conn.lowest().expires_after(std::chrono::milliseconds(timeout_ms_));
            tcp::resolver resolver(conn.ioc);
            auto endpoints = co_await resolver.async_resolve(host_, port_, asio::use_awaitable);
            co_await conn.lowest().async_connect(endpoints, asio::use_awaitable);
            if (conn.tls) {
              co_await conn.tls->async_handshake(ssl::stream_base::client, asio::use_awaitable);
            }
            conn.open = true;
          }
          conn.lowest().expires_after(std::chrono::milliseconds(timeout_ms_));
          auto exchange = [&](auto& stream) -> asio::awaitable<void> {
            co_await http::async_write(stream, req, asio::use_awaitable);
            sent = true;
            co_await http::async_read_header(stream, conn.buffer, *parser, asio::use_awaitable);
            answered = true;
            co_await http::async_read(stream, conn.buffer, *parser, asio::use_awaitable);
          };
          if (conn.tls) {
            co_await exchange(*conn.tls);
          } else {
            co_await exchange(*conn.plain);
          }
        },
        [&](std::exception_ptr e) {
          if (!e) return;
          try {
            std::rethrow_exception(e);
          } catch (const boost::system::system_error& se) {
            error = se.code();
          } catch (...) {
            error = asio::error::fault;
          }
        });
    conn.ioc.run();
    if (!error) break;
    conn.Close();
    // Retry only on a kept connection that the server had closed: the
    // request was not written, or (for requests safe to repeat, not POST)
    // the connection ended before any answer.
    const bool closed_by_peer = error == http::error::end_of_stream ||
                                error == asio::error::connection_reset ||
                                error == asio::error::broken_pipe || error == asio::error::eof;
    const bool retry = reused && !answered && (!sent || (closed_by_peer && method != "POST"));
    if (!retry) break;
  }
  if (error) {
    return Unavailable("cannot reach cpn server at " + base_url_ + ": " + error.message());
  }
  conn.last_used = std::chrono::steady_clock::now();
  if (!parser->get().keep_alive()) conn.Close();
  auto& msg = parser->get();
  HttpResponse r;
  r.status = static_cast<int>(msg.result_int());
  r.content_type = std::string(msg[http::field::content_type]);
  for (const auto& field : msg) {
    std::string name(field.name_string());
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    r.headers[name] = std::string(field.value());
  }
  r.body = std::move(msg.body());
  return r;
}

}  // namespace cpn::net
