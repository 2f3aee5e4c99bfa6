#include <cctype>
#include <condition_variable>
#include <mutex>
#include <optional>

#include "src/net/http.h"

namespace cpn::net {

HttpResponse AwaitSendAfter(HttpResponse r) {
  if (!r.send_after) return r;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::optional<HttpResponse> instead;
  r.send_after([&](std::optional<HttpResponse> failed) {
    std::lock_guard lock(mu);
    instead = std::move(failed);
    done = true;
    cv.notify_one();
  });
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return done; });
  r.send_after = nullptr;
  return instead ? std::move(*instead) : r;
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
