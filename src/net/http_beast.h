// Internal to src/net: the one conversion from Beast's request type to
// HttpRequest, and the header limit, shared by the server's connection loop
// (http_server.cc) and the standalone parser (http_parse.cc). Includes Beast;
// only src/net/*.cc may include it.
#pragma once

#include <boost/beast/http.hpp>
#include <cctype>
#include <cstdint>
#include <string>
#include <utility>

#include "src/net/http.h"

namespace cpn::net {

inline constexpr uint32_t kHeaderLimitBytes = 16 * 1024;

inline HttpRequest FromBeast(boost::beast::http::request<boost::beast::http::string_body>&& msg,
                             std::string peer) {
  HttpRequest req;
  req.method = std::string(msg.method_string());
  req.target = std::string(msg.target());
  for (const auto& field : msg) {
    std::string name(field.name_string());
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    req.headers[name] = std::string(field.value());
  }
  req.body = std::move(msg.body());
  req.peer = std::move(peer);
  return req;
}

}  // namespace cpn::net
