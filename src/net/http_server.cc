// The only translation unit (with http_client.cc) that includes Beast/Asio.
#include "src/net/http_server.h"

#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <utility>  // before Asio: g++ 12 + C++20 awaitable.hpp needs std::exchange
#include <vector>

#include "src/net/http_beast.h"

namespace cpn::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
namespace ssl = asio::ssl;

struct Worker;

// A response waiting for its send_after work. The work's callback may come
// on any thread and resumes the connection's coroutine on its own worker; a
// server that stops first releases the coroutine itself (Worker::waiting).
struct Deferred {
  std::mutex mu;
  Worker* worker = nullptr;      // null once the server has stopped
  std::function<void()> resume;  // the suspended coroutine's continuation
  std::optional<HttpResponse> instead;
};

// One event loop per thread, each serving the connections it was given: no
// handler is handed from the thread that saw its socket ready to another, as
// with one io_context run by many threads. That handoff's wake-ups were a
// fifth of the server's CPU; without it bench/run submit went from about 6,200
// to 7,000 submissions/s with 8 clients, server CPU from 175 to 135 µs each.
// Members in order of destruction last to first: the loop goes before what
// its connections' coroutines touch as they are destroyed with it.
struct Worker {
  std::atomic<int> connections{0};
  // Responses of this worker's connections waiting for their work; touched
  // only on the worker's thread, or after it has stopped.
  std::set<std::shared_ptr<Deferred>> waiting;
  asio::io_context ioc{1};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> keep_running{
      ioc.get_executor()};
};

// Suspends the calling coroutine, not its thread, until `start`'s work calls
// back; returns the response to send instead, if the work gave one.
asio::awaitable<std::optional<HttpResponse>> AwaitWork(
    Worker* worker, std::function<void(std::function<void(std::optional<HttpResponse>)>)> start) {
  auto d = std::make_shared<Deferred>();
  d->worker = worker;
  co_await asio::async_initiate<decltype(asio::use_awaitable), void()>(
      [&](auto handler) {
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        d->resume = [h] { (*h)(); };
        worker->waiting.insert(d);
        start([d](std::optional<HttpResponse> instead) {
          std::lock_guard lock(d->mu);
          d->instead = std::move(instead);
          if (d->worker == nullptr) return;
          asio::post(d->worker->ioc, [d] {
            std::function<void()> resume;
            {
              std::lock_guard lock(d->mu);
              if (d->worker == nullptr) return;
              d->worker->waiting.erase(d);
              resume = std::move(d->resume);
            }
            if (resume) resume();
          });
        });
      },
      asio::use_awaitable);
  std::lock_guard lock(d->mu);
  co_return std::move(d->instead);
}

// Destroyed in reverse: the listener's loop (whose pending accept names a
// worker's loop) before the workers, the workers before what their
// connections use.
struct HttpServer::Impl {
  HttpServerOptions options;
  HttpHandler handler;
  std::optional<ssl::context> tls;
  std::atomic<bool> stopped{false};
  std::vector<std::unique_ptr<Worker>> workers;
  asio::io_context accept_ioc{1};  // the listener's own loop
  std::optional<tcp::acceptor> acceptor;
  std::vector<std::thread> threads;
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

// The verified client certificate's common name, or "".
std::string ClientCommonName(SSL* ssl) {
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (cert == nullptr) return "";
  std::string cn;
  if (SSL_get_verify_result(ssl) == X509_V_OK) {
    char buf[256] = {};
    int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buf, sizeof buf);
    if (n > 0) cn.assign(buf, static_cast<size_t>(n));
  }
  X509_free(cert);
  return cn;
}

// One connection's requests, over plain TCP or TLS.
template <class Stream>
asio::awaitable<void> Serve(HttpServer::Impl* impl, Worker* worker, Stream& stream,
                            std::string peer, std::string client_cn) {
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(kHeaderLimitBytes);
    parser.body_limit(impl->options.max_body_bytes);
    beast::get_lowest_layer(stream).expires_after(
        std::chrono::seconds(impl->options.read_timeout_s));
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
        beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(5));
        beast::error_code wec;
        co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, wec));
      }
      break;
    }
    const unsigned version = parser.get().version();
    const bool keep_alive_asked = parser.get().keep_alive();
    HttpRequest req = FromBeast(parser.release(), peer);
    req.client_cert_cn = client_cn;
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
    if (resp.send_after) {
      auto instead = co_await AwaitWork(worker, std::move(resp.send_after));
      resp.send_after = nullptr;
      if (instead) resp = std::move(*instead);
    }
    bool keep_alive = keep_alive_asked;
    auto res = ToBeast(resp, version, keep_alive);
    beast::get_lowest_layer(stream).expires_after(
        std::chrono::seconds(impl->options.read_timeout_s));
    co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
    if (ec || !keep_alive) break;
  }
}

asio::awaitable<void> Session(HttpServer::Impl* impl, Worker* worker, tcp::socket socket) {
  struct Count {
    Worker* w;
    ~Count() { w->connections--; }
  } count{worker};
  std::string peer;
  {
    beast::error_code ec;
    auto ep = socket.remote_endpoint(ec);
    if (!ec) peer = ep.address().to_string() + ":" + std::to_string(ep.port());
  }
  if (!impl->tls) {
    beast::tcp_stream stream(std::move(socket));
    co_await Serve(impl, worker, stream, peer, "");
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    co_return;
  }
  beast::ssl_stream<beast::tcp_stream> stream(std::move(socket), *impl->tls);
  beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(10));
  beast::error_code ec;
  co_await stream.async_handshake(ssl::stream_base::server,
                                  asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return;  // not TLS, or a certificate that does not verify
  co_await Serve(impl, worker, stream, peer, ClientCommonName(stream.native_handle()));
  beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(2));
  co_await stream.async_shutdown(asio::redirect_error(asio::use_awaitable, ec));
}

asio::awaitable<void> Listen(HttpServer::Impl* impl) {
  for (;;) {
    beast::error_code ec;
    // Some handlers block their thread (a report waits for its write), so
    // a new connection goes to the thread serving fewest.
    Worker* worker = impl->workers.front().get();
    for (const auto& w : impl->workers) {
      if (w->connections < worker->connections) worker = w.get();
    }
    tcp::socket socket = co_await impl->acceptor->async_accept(
        worker->ioc, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (impl->stopped || ec == asio::error::operation_aborted) co_return;
      continue;  // e.g. EMFILE: keep serving the connections we have
    }
    worker->connections++;
    asio::co_spawn(worker->ioc, Session(impl, worker, std::move(socket)), asio::detached);
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
  const HttpServerOptions& o = impl_->options;
  if (o.tls_cert_file.empty() != o.tls_key_file.empty()) {
    return InvalidArgument("TLS needs both a certificate and a key");
  }
  if (!o.tls_cert_file.empty()) {
    ssl::context ctx(ssl::context::tls_server);
    ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                    ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    ctx.use_certificate_chain_file(o.tls_cert_file, ec);
    if (ec)
      return InvalidArgument("TLS: cannot load certificate " + o.tls_cert_file + ": " +
                             ec.message());
    ctx.use_private_key_file(o.tls_key_file, ssl::context::pem, ec);
    if (ec || SSL_CTX_check_private_key(ctx.native_handle()) != 1) {
      return InvalidArgument("TLS: cannot load key " + o.tls_key_file +
                             " (or it does not match the certificate)");
    }
    if (!o.tls_client_ca_file.empty()) {
      ctx.load_verify_file(o.tls_client_ca_file, ec);
      if (ec) {
        return InvalidArgument("TLS: cannot load client CA " + o.tls_client_ca_file + ": " +
                               ec.message());
      }
      ctx.set_verify_mode(ssl::verify_peer, ec);  // a certificate is optional; a bad one fails
    }
    impl_->tls.emplace(std::move(ctx));
  }
  auto address = asio::ip::make_address(impl_->options.address, ec);
  if (ec) return InvalidArgument("bad listen address '" + impl_->options.address + "'");
  tcp::endpoint endpoint(address, impl_->options.port);
  impl_->acceptor.emplace(impl_->accept_ioc);
  impl_->acceptor->open(endpoint.protocol(), ec);
  if (!ec) impl_->acceptor->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl_->acceptor->bind(endpoint, ec);
  if (!ec) impl_->acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return Unavailable("cannot listen on " + impl_->options.address + ":" +
                       std::to_string(impl_->options.port) + ": " + ec.message());
  }
  uint16_t port = impl_->acceptor->local_endpoint().port();
  int threads = impl_->options.threads;
  if (threads <= 0)
    threads = std::max(8, 6 * static_cast<int>(std::thread::hardware_concurrency()));
  for (int i = 0; i < threads; ++i) impl_->workers.push_back(std::make_unique<Worker>());
  asio::co_spawn(impl_->accept_ioc, Listen(impl_.get()), asio::detached);
  impl_->threads.emplace_back([this] { impl_->accept_ioc.run(); });
  for (auto& w : impl_->workers) {
    impl_->threads.emplace_back([w = w.get()] { w->ioc.run(); });
  }
  return port;
}

void HttpServer::Stop() {
  if (!impl_ || impl_->stopped.exchange(true)) return;
  asio::post(impl_->accept_ioc, [this] {
    beast::error_code ec;
    if (impl_->acceptor) impl_->acceptor->close(ec);
  });
  impl_->accept_ioc.stop();
  for (auto& w : impl_->workers) w->ioc.stop();
  for (auto& t : impl_->threads) t.join();
  impl_->threads.clear();
  // Responses still waiting for their work: their callbacks, whenever they
  // come, find no worker; their coroutines end here, while their loop exists.
  for (auto& w : impl_->workers) {
    for (const auto& d : w->waiting) {
      std::function<void()> resume;
      {
        std::lock_guard lock(d->mu);
        d->worker = nullptr;
        resume = std::move(d->resume);
      }
    }
    w->waiting.clear();
  }
}

}  // namespace cpn::net
