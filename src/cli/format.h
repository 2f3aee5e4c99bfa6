// Text formatting for the command line: aligned tables and human units.
#pragma once

#include <string>
#include <vector>

namespace cpn::cli {

class Table {
 public:
  explicit Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}
  void Add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  std::string Render() const;
  bool empty() const { return rows_.empty(); }

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

std::string Cny(double v);    // "12,345 CNY" / "12.50 CNY"
std::string Hours(double h);  // "3 d 4.0 h", "2.5 h", "12 min", "40 s"
std::string Number(double v, int decimals = 1);
std::string TimeOfMs(int64_t ms);  // "2026-11-27 12:00:01"
std::string OrDash(const std::string& s);

}  // namespace cpn::cli
