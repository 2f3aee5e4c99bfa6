// ParseHttpRequest: the server's request parser without a connection, for
// tests and fuzzing. Beast's parser only; no Asio coroutines, so it also
// builds where those are unavailable (the clang fuzz build).
#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>

#include "src/net/http.h"
#include "src/net/http_beast.h"

namespace cpn::net {

namespace beast = boost::beast;
namespace http = beast::http;

Result<HttpRequest> ParseHttpRequest(std::string_view wire, uint64_t max_body_bytes) {
  http::request_parser<http::string_body> parser;
  parser.header_limit(kHeaderLimitBytes);
  parser.body_limit(max_body_bytes);
  parser.eager(true);
  beast::error_code ec;
  size_t used = 0;
  while (used < wire.size() && !parser.is_done()) {
    size_t n = parser.put(boost::asio::buffer(wire.data() + used, wire.size() - used), ec);
    if (ec == http::error::need_more) {
      ec = {};
      if (n == 0) break;
    }
    if (ec) break;
    used += n;
  }
  if (ec == http::error::body_limit) {
    return ResourceExhausted("request body exceeds " + std::to_string(max_body_bytes) + " bytes");
  }
  if (ec == http::error::header_limit) {
    return ResourceExhausted("request headers exceed " + std::to_string(kHeaderLimitBytes) +
                             " bytes");
  }
  if (ec) return InvalidArgument("malformed HTTP request: " + ec.message());
  if (!parser.is_done()) return InvalidArgument("incomplete HTTP request");
  return FromBeast(parser.release(), "");
}

}  // namespace cpn::net
