#include <cctype>
#include <condition_variable>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>

#include "src/net/http.h"

namespace cpn::net {

HttpResponse SendAfterFailed(const Status& status) {
  HttpResponse r;
  r.status = 503;
  r.body =
      nlohmann::json{
          {"error", {{"code", "unavailable"}, {"message", status.message()}, {"status", 503}}}}
          .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return r;
}

HttpResponse AwaitSendAfter(HttpResponse r) {
  if (!r.send_after) return r;
  std::mutex mu;
  std::condition_variable cv;
  std::optional<Status> result;
  r.send_after([&](Status s) {
    std::lock_guard lock(mu);
    result = std::move(s);
    cv.notify_one();
  });
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return result.has_value(); });
  r.send_after = nullptr;
  return result->ok() ? r : SendAfterFailed(*result);
}

std::string PathOf(const std::string& target) { return target.substr(0, target.find('?')); }

std::string UrlDecode(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else if (s[i] == '+') {
      out += ' ';
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string UrlEncode(const std::string& s) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::map<std::string, std::string> QueryOf(const std::string& target) {
  std::map<std::string, std::string> q;
  size_t pos = target.find('?');
  if (pos == std::string::npos) return q;
  std::string rest = target.substr(pos + 1);
  size_t start = 0;
  while (start <= rest.size()) {
    size_t amp = rest.find('&', start);
    std::string part =
        rest.substr(start, amp == std::string::npos ? std::string::npos : amp - start);
    if (!part.empty()) {
      size_t eq = part.find('=');
      std::string k = UrlDecode(part.substr(0, eq));
      std::string v = eq == std::string::npos ? "" : UrlDecode(part.substr(eq + 1));
      q[k] = v;
    }
    if (amp == std::string::npos) break;
    start = amp + 1;
  }
  return q;
}

}  // namespace cpn::net
