// The only translation unit (with http_client.cc) that includes Beast/Asio.
#include "src/net/http_server.h"

#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/beast.hpp>
#include <chrono>
#include <optional>
#include <thread>
#include <utility>  // before Asio: g++ 12 + C++20 awaitable.hpp needs std::exchange
#include <vector>

#include "src/net/http_beast.h"

namespace cpn::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

struct HttpServer::Impl {
  HttpServerOptions options;
  HttpHandler handler;
  asio::io_context ioc;
  std::optional<tcp::acceptor> acceptor;
  std::vector<std::thread> threads;
  std::atomic<bool> stopped{false};
};

namespace {

http::response<http::string_body> ToBeast(const HttpResponse& r, unsigned version,
                                          bool keep_alive) {
  http::response<http::string_body> res{static_cast<http::status>(r.status), version};
  res.set(http::field::server, "cpn");
  res.set(http::field::content_type, r.content_type);
  for (const auto& [k, v] : r.headers) res.set(k, v);
  res.keep_alive(keep_alive);
  res.body() = r.body;
  res.prepare_payload();
  return res;
}

HttpResponse ErrorResponse(int status, const std::string& code, const std::string& message) {
  HttpResponse r;
  r.status = status;
  // Hand-built: the message is a fixed ASCII string.
  r.body = "{\"error\":{\"code\":\"" + code + "\",\"message\":\"" + message +
           "\",\"status\":" + std::to_string(status) + "}}";
  return r;
}

asio::awaitable<void> Session(HttpServer::Impl* impl, tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  std::string peer;
  {
    beast::error_code ec;
    auto ep = stream.socket().remote_endpoint(ec);
    if (!ec) peer = ep.address().to_string() + ":" + std::to_string(ep.port());
  }
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(kHeaderLimitBytes);
    parser.body_limit(impl->options.max_body_bytes);
    stream.expires_after(std::chrono::seconds(impl->options.read_timeout_s));
    beast::error_code ec;
    co_await http::async_read(stream, buffer, parser,
                              asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      std::optional<HttpResponse> reply;
      if (ec == http::error::body_limit) {
        reply = ErrorResponse(
            413, "payload_too_large",
            "request body exceeds " + std::to_string(impl->options.max_body_bytes) + " bytes");
      } else if (ec == http::error::header_limit) {
        reply = ErrorResponse(431, "headers_too_large", "request headers exceed 16384 bytes");
      } else if (ec != http::error::end_of_stream && ec != beast::error::timeout &&
                 ec != asio::error::connection_reset && ec != asio::error::eof &&
                 ec != asio::error::operation_aborted &&
                 ec.category() == http::make_error_code(http::error::end_of_stream).category()) {
        reply = ErrorResponse(400, "bad_request", "malformed HTTP request");
      }
      if (reply) {
        auto res = ToBeast(*reply, 11, false);
        stream.expires_after(std::chrono::seconds(5));
        beast::error_code wec;
        co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, wec));
      }
      break;
    }
    const unsigned version = parser.get().version();
    const bool keep_alive_asked = parser.get().keep_alive();
    HttpRequest req = FromBeast(parser.release(), peer);
    HttpResponse resp = impl->handler(req);
    auto start = std::chrono::steady_clock::now();
    while (resp.wait_up_to_ms > 0) {
      auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - start)
                        .count();
      if (waited >= resp.wait_up_to_ms || impl->stopped) {
        req.may_wait = false;
        resp = impl->handler(req);
        break;
      }
      asio::steady_timer timer(co_await asio::this_coro::executor, std::chrono::milliseconds(100));
      co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      resp = impl->handler(req);
    }
    bool keep_alive = keep_alive_asked;
    auto res = ToBeast(resp, version, keep_alive);
    stream.expires_after(std::chrono::seconds(impl->options.read_timeout_s));
    co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
    if (ec || !keep_alive) break;
  }
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

asio::awaitable<void> Listen(HttpServer::Impl* impl) {
  for (;;) {
    beast::error_code ec;
    tcp::socket socket =
        co_await impl->acceptor->async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (impl->stopped || ec == asio::error::operation_aborted) co_return;
      continue;  // e.g. EMFILE: keep serving the connections we have
    }
    asio::co_spawn(impl->ioc, Session(impl, std::move(socket)), asio::detached);
  }
}

}  // namespace

HttpServer::HttpServer(HttpServerOptions options, HttpHandler handler)
    : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  impl_->handler = std::move(handler);
}

HttpServer::~HttpServer() { Stop(); }

Result<uint16_t> HttpServer::Start() {
  beast::error_code ec;
  auto address = asio::ip::make_address(impl_->options.address, ec);
  if (ec) return InvalidArgument("bad listen address '" + impl_->options.address + "'");
  tcp::endpoint endpoint(address, impl_->options.port);
  impl_->acceptor.emplace(impl_->ioc);
  impl_->acceptor->open(endpoint.protocol(), ec);
  if (!ec) impl_->acceptor->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl_->acceptor->bind(endpoint, ec);
  if (!ec) impl_->acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return Unavailable("cannot listen on " + impl_->options.address + ":" +
                       std::to_string(impl_->options.port) + ": " + ec.message());
  }
  uint16_t port = impl_->acceptor->local_endpoint().port();
  asio::co_spawn(impl_->ioc, Listen(impl_.get()), asio::detached);
  for (int i = 0; i < std::max(1, impl_->options.threads); ++i) {
    impl_->threads.emplace_back([this] { impl_->ioc.run(); });
  }
  return port;
}

void HttpServer::Stop() {
  if (!impl_ || impl_->stopped.exchange(true)) return;
  asio::post(impl_->ioc, [this] {
    beast::error_code ec;
    if (impl_->acceptor) impl_->acceptor->close(ec);
  });
  impl_->ioc.stop();
  for (auto& t : impl_->threads) t.join();
  impl_->threads.clear();
}

}  // namespace cpn::net
