#include "src/net/http_client.h"

#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <chrono>
#include <exception>
#include <utility>  // before Asio: g++ 12 + C++20 awaitable.hpp needs std::exchange

namespace cpn::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

Result<HttpClient> HttpClient::Create(const std::string& base_url, int timeout_ms) {
  const std::string prefix = "http://";
  if (base_url.rfind(prefix, 0) != 0) {
    return InvalidArgument("server address '" + base_url +
                           "' must look like http://HOST:PORT (https is not supported yet)");
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
  c.timeout_ms_ = timeout_ms;
  return c;
}

Result<HttpResponse> HttpClient::Send(const std::string& method, const std::string& target,
                                      const std::string& body, const std::string& content_type,
                                      const std::map<std::string, std::string>& headers) const {
  asio::io_context ioc;
  tcp::resolver resolver(ioc);
  beast::tcp_stream stream(ioc);
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, host_);
  req.set(http::field::user_agent, "cpn");
  for (const auto& [name, value] : headers) req.set(name, value);
  if (!body.empty() || method == "POST" || method == "PUT") {
    req.set(http::field::content_type, content_type);
    req.body() = body;
  }
  req.keep_alive(false);
  req.prepare_payload();
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(256ull << 20);
  parser.header_limit(64 * 1024);
  beast::error_code error;
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        stream.expires_after(std::chrono::milliseconds(timeout_ms_));
        auto endpoints = co_await resolver.async_resolve(host_, port_, asio::use_awaitable);
        co_await stream.async_connect(endpoints, asio::use_awaitable);
        co_await http::async_write(stream, req, asio::use_awaitable);
        co_await http::async_read(stream, buffer, parser, asio::use_awaitable);
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
  ioc.run();
  if (error) {
    return Unavailable("cannot reach cpn server at " + base_url_ + ": " + error.message());
  }
  auto& msg = parser.get();
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
