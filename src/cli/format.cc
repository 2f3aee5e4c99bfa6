#include "src/cli/format.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <ctime>

namespace cpn::cli {

namespace {
// Display width in code points, so CJK and "—" do not break alignment badly.
size_t Width(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}
}  // namespace

std::string Table::Render() const {
  std::vector<size_t> w(headers_.size(), 0);
  for (size_t i = 0; i < headers_.size(); ++i) w[i] = Width(headers_[i]);
  for (const auto& r : rows_) {
    for (size_t i = 0; i < r.size() && i < w.size(); ++i) w[i] = std::max(w[i], Width(r[i]));
  }
  auto line = [&](const std::vector<std::string>& r) {
    std::string out;
    for (size_t i = 0; i < w.size(); ++i) {
      std::string cell = i < r.size() ? r[i] : "";
      out += cell;
      if (i + 1 < w.size()) out += std::string(w[i] - Width(cell) + 2, ' ');
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out + "\n";
  };
  std::string out = line(headers_);
  for (const auto& r : rows_) out += line(r);
  return out;
}

std::string Number(double v, int decimals) {
  std::string s = fmt::format("{:.{}f}", std::fabs(v), decimals);
  size_t dot = s.find('.');
  std::string int_part = s.substr(0, dot), frac = dot == std::string::npos ? "" : s.substr(dot);
  // Thousands separators on the integer part.
  std::string grouped;
  for (size_t i = 0; i < int_part.size(); ++i) {
    if (i > 0 && (int_part.size() - i) % 3 == 0) grouped += ',';
    grouped += int_part[i];
  }
  return (v < 0 && s.find_first_not_of("0.") != std::string::npos ? "-" : "") + grouped + frac;
}

std::string Cny(double v) { return Number(v, std::fabs(v) >= 100 ? 0 : 2) + " CNY"; }

std::string Hours(double h) {
  if (h <= 0) return "0 s";
  if (h < 1.0 / 60) return fmt::format("{:.0f} s", h * 3600);
  if (h < 1) return fmt::format("{:.0f} min", h * 60);
  if (h < 48) return fmt::format("{:.1f} h", h);
  return fmt::format("{:.0f} d {:.0f} h", std::floor(h / 24), std::fmod(h, 24));
}

std::string TimeOfMs(int64_t ms) {
  if (ms <= 0) return "-";
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

std::string OrDash(const std::string& s) { return s.empty() ? "-" : s; }

}  // namespace cpn::cli
