#include "src/sim/charts.h"

#include <fmt/format.h>

#include <algorithm>

namespace cpn::sim {
namespace {

const char* const kColours[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728",
                                "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"};

std::string Escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<')
      out += "&lt;";
    else if (c == '>')
      out += "&gt;";
    else if (c == '&')
      out += "&amp;";
    else
      out += c;
  }
  return out;
}

}  // namespace

std::string CostVsCompletionSvg(const std::vector<SimReport>& reports) {
  const double w = 640, h = 420, left = 80, right = 20, top = 40, bottom = 60;
  double max_cost = 1, max_h = 1;
  for (const auto& r : reports) {
    max_cost = std::max(max_cost, r.cost_cny);
    max_h = std::max(max_h, r.mean_completion_s / 3600);
  }
  max_cost *= 1.1;
  max_h *= 1.1;
  auto x = [&](double hours) { return left + hours / max_h * (w - left - right); };
  auto y = [&](double cny) { return h - bottom - cny / max_cost * (h - top - bottom); };
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n"
      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{}\" y=\"22\" font-size=\"15\">Cost vs mean completion time, per policy</text>\n"
      "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n"
      "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n"
      "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">mean completion (h)</text>\n"
      "<text x=\"16\" y=\"{}\" transform=\"rotate(-90 16 {})\" text-anchor=\"middle\">"
      "cost (CNY)</text>\n",
      w, h, left, left, h - bottom, w - right, h - bottom, left, top, left, h - bottom,
      (left + w - right) / 2, h - 20, (top + h - bottom) / 2, (top + h - bottom) / 2);
  for (int i = 0; i <= 4; ++i) {
    double hv = max_h * i / 4, cv = max_cost * i / 4;
    svg += fmt::format(
        "<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{:.1f}</text>\n"
        "<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{:.0f}</text>\n",
        x(hv), h - bottom + 16, hv, left - 6, y(cv) + 4, cv);
  }
  for (size_t i = 0; i < reports.size(); ++i) {
    const auto& r = reports[i];
    double px = x(r.mean_completion_s / 3600), py = y(r.cost_cny);
    svg += fmt::format(
        "<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"6\" fill=\"{}\"/>\n"
        "<text x=\"{:.1f}\" y=\"{:.1f}\">{}</text>\n",
        px, py, kColours[i % 8], px + 9, py - 6, Escape(r.policy));
  }
  return svg + "</svg>\n";
}

std::string UtilisationSvg(const std::vector<SimReport>& reports) {
  if (reports.empty()) return "<svg xmlns=\"http://www.w3.org/2000/svg\"/>\n";
  const auto& areas = reports.front().utilisation_by_area;
  const double group = 24.0 * static_cast<double>(reports.size()) + 20, left = 60, top = 40,
               plot_h = 260;
  const double w = left + group * static_cast<double>(areas.size()) + 140, h = top + plot_h + 60;
  double max_u = 0.01;
  for (const auto& r : reports) {
    for (const auto& [a, u] : r.utilisation_by_area) max_u = std::max(max_u, u);
  }
  max_u *= 1.1;
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{:.0f}\" height=\"{:.0f}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n"
      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{}\" y=\"22\" font-size=\"15\">Utilisation per hub, per policy</text>\n"
      "<line x1=\"{}\" y1=\"{}\" x2=\"{:.0f}\" y2=\"{}\" stroke=\"black\"/>\n",
      w, h, left, left, top + plot_h, w - 140, top + plot_h);
  for (int i = 0; i <= 4; ++i) {
    double u = max_u * i / 4;
    svg += fmt::format("<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{:.1f}%</text>\n", left - 6,
                       top + plot_h - u / max_u * plot_h + 4, u * 100);
  }
  for (size_t a = 0; a < areas.size(); ++a) {
    double gx = left + group * static_cast<double>(a) + 10;
    for (size_t i = 0; i < reports.size(); ++i) {
      double u =
          a < reports[i].utilisation_by_area.size() ? reports[i].utilisation_by_area[a].second : 0;
      double bh = u / max_u * plot_h;
      svg += fmt::format(
          "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"20\" height=\"{:.1f}\" fill=\"{}\"/>\n",
          gx + 24.0 * static_cast<double>(i), top + plot_h - bh, bh, kColours[i % 8]);
    }
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
                       gx + 12.0 * static_cast<double>(reports.size()), top + plot_h + 16,
                       Escape(areas[a].first));
  }
  for (size_t i = 0; i < reports.size(); ++i) {
    double ly = top + 16.0 * static_cast<double>(i);
    svg += fmt::format(
        "<rect x=\"{:.0f}\" y=\"{:.0f}\" width=\"12\" height=\"12\" fill=\"{}\"/>\n"
        "<text x=\"{:.0f}\" y=\"{:.0f}\">{}</text>\n",
        w - 130, ly, kColours[i % 8], w - 112, ly + 10, Escape(reports[i].policy));
  }
  return svg + "</svg>\n";
}

std::string UtilisationOverTimeSvg(const SimReport& r) {
  const double w = 760, h = 400, left = 60, right = 120, top = 40, bottom = 50;
  size_t buckets = 0;
  for (const auto& series : r.utilisation_over_time) buckets = std::max(buckets, series.size());
  const double span_h =
      std::max(1.0, static_cast<double>(buckets) * r.utilisation_bucket_s / 3600.0);
  auto x = [&](double hours) { return left + hours / span_h * (w - left - right); };
  auto y = [&](double u) { return h - bottom - std::min(u, 1.0) * (h - top - bottom); };
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n"
      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{}\" y=\"22\" font-size=\"15\">Utilisation per hub over time: {}</text>\n"
      "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n"
      "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n"
      "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">time (h)</text>\n",
      w, h, left, Escape(r.policy), left, h - bottom, w - right, h - bottom, left, top, left,
      h - bottom, (left + w - right) / 2, h - 12);
  for (int i = 0; i <= 4; ++i) {
    svg += fmt::format(
        "<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{}%</text>\n"
        "<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{:.0f}</text>\n",
        left - 6, y(i / 4.0) + 4, i * 25, x(span_h * i / 4), h - bottom + 16, span_h * i / 4);
  }
  for (size_t a = 0; a < r.utilisation_over_time.size() && a < r.utilisation_by_area.size(); ++a) {
    const auto& series = r.utilisation_over_time[a];
    std::string points;
    for (size_t b = 0; b < series.size(); ++b) {
      double mid_h = (static_cast<double>(b) + 0.5) * r.utilisation_bucket_s / 3600.0;
      points += fmt::format("{:.1f},{:.1f} ", x(mid_h), y(series[b]));
    }
    svg += fmt::format(
        "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"{}\"/>\n"
        "<rect x=\"{:.0f}\" y=\"{:.0f}\" width=\"12\" height=\"12\" fill=\"{}\"/>\n"
        "<text x=\"{:.0f}\" y=\"{:.0f}\">{}</text>\n",
        kColours[a % 8], points, w - right + 10, top + 16.0 * static_cast<double>(a),
        kColours[a % 8], w - right + 28, top + 16.0 * static_cast<double>(a) + 10,
        Escape(r.utilisation_by_area[a].first));
  }
  return svg + "</svg>\n";
}

}  // namespace cpn::sim
