#include "src/sim/workload.h"

#include <fmt/format.h>

#include <cmath>
#include <random>
#include <sstream>

#include "src/core/data_dir.h"
#include "src/core/ids.h"

namespace cpn::sim {

const char* const kWorkloadHeader =
    "arrival_s,tenant,class,accelerator,fp16_eflop,cards,duration_s,dataset_site,dataset_gb,"
    "residency,deadline_h,accelerator_fp16_tflops";

std::vector<std::string> SplitCsvLine(const std::string& line) {
  std::vector<std::string> cells;
  std::string cell;
  for (char c : line) {
    if (c == ',') {
      cells.push_back(cell);
      cell.clear();
    } else if (c != '\r') {
      cell += c;
    }
  }
  cells.push_back(cell);
  return cells;
}

Result<double> CsvNumber(const std::string& s, const std::string& where, double min, double max) {
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || !std::isfinite(v) || v < min || v > max) {
    return InvalidArgument(fmt::format("{}: expected a number between {} and {}, got '{}'", where,
                                       min, max, s.substr(0, 40)));
  }
  return v;
}

Result<std::vector<WorkloadJob>> ParseWorkloadCsv(const std::string& text, const std::string& what,
                                                  const Catalog& catalog) {
  std::vector<WorkloadJob> jobs;
  std::istringstream in(text);
  std::string line;
  int64_t line_no = 0;
  std::vector<std::string> header = SplitCsvLine(kWorkloadHeader);
  const std::vector<std::string> short_header(header.begin(), header.end() - 1);
  double last_arrival = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty() || line[0] == '#') continue;
    auto cells = SplitCsvLine(line);
    if (line_no == 1 || (jobs.empty() && (cells == header || cells == short_header))) {
      if (cells == short_header) {
        header = short_header;
      } else if (cells != header) {
        return InvalidArgument(fmt::format("{}:{}: the first line must be the header: {}", what,
                                           line_no, kWorkloadHeader));
      }
      continue;
    }
    auto at = [&](size_t col) { return fmt::format("{}:{}: {}", what, line_no, header[col]); };
    if (cells.size() != header.size()) {
      return InvalidArgument(fmt::format("{}:{}: expected {} columns, got {}", what, line_no,
                                         header.size(), cells.size()));
    }
    WorkloadJob j;
    JobSpec& s = j.spec;
    auto arrival = CsvNumber(cells[0], at(0), 0, 1e10);
    if (!arrival.ok()) return arrival.status();
    j.arrival_s = *arrival;
    if (j.arrival_s < last_arrival) {
      return InvalidArgument(at(0) + ": arrivals must not decrease");
    }
    last_arrival = j.arrival_s;
    s.tenant = cells[1];
    if (s.tenant.empty()) return InvalidArgument(at(1) + ": must not be empty");
    s.name = fmt::format("job-{}", jobs.size());
    auto cls = ParseJobClass(cells[2]);
    if (!cls.ok()) return InvalidArgument(at(2) + ": " + cls.status().message());
    s.job_class = *cls;
    s.accelerator = cells[3];
    double given_tflops = 0;  // checked whenever given; used for unknown cards only
    if (header.size() == 12 && !cells[11].empty()) {
      auto tflops = CsvNumber(cells[11], at(11), 0.001, 1e6);
      if (!tflops.ok()) return tflops.status();
      given_tflops = *tflops;
    }
    if (!s.accelerator.empty() && catalog.Find(s.accelerator) == nullptr) {
      // A card the catalog lacks is mapped by FP16 capacity, if the trace says
      // what that capacity is.
      if (given_tflops == 0) {
        return InvalidArgument(at(3) + ": unknown accelerator '" + s.accelerator +
                               "' (not in the catalog; give its FP16 TFLOPS per card in "
                               "accelerator_fp16_tflops to map it by capacity)");
      }
      j.mapped_from = s.accelerator;
      j.ref_fp16_tflops = given_tflops;
      s.accelerator.clear();
    }
    auto cards = CsvNumber(cells[5], at(5), 1, kMaxCardsPerJob);
    if (!cards.ok()) return cards.status();
    s.cards = static_cast<int64_t>(*cards);
    if (static_cast<double>(s.cards) != *cards)
      return InvalidArgument(at(5) + ": expected an integer");
    auto duration = CsvNumber(cells[6], at(6), 1e-3, 1e9);
    if (!duration.ok()) return duration.status();
    j.duration_s = *duration;
    if (cells[4].empty() && !j.mapped_from.empty()) {
      s.work_fp16_eflop = static_cast<double>(s.cards) * j.ref_fp16_tflops * 1e12 *
                          AcceleratorModel{}.efficiency(s.job_class) * j.duration_s / 1e18;
    } else if (cells[4].empty()) {
      // No work given: what the duration means on the named (or an A800) card.
      const AcceleratorModel* m =
          catalog.Find(s.accelerator.empty() ? "nvidia-a800-sxm" : s.accelerator);
      if (m == nullptr) return InvalidArgument(at(4) + ": needs fp16_eflop or a known accelerator");
      s.work_fp16_eflop = static_cast<double>(s.cards) * m->fp16_equivalent_tflops() * 1e12 *
                          m->efficiency(s.job_class) * j.duration_s / 1e18;
    } else {
      auto work = CsvNumber(cells[4], at(4), 1e-9, 1e9);
      if (!work.ok()) return work.status();
      s.work_fp16_eflop = *work;
    }
    s.dataset_site = cells[7];
    Status site = ValidateSiteId(s.dataset_site, at(7));
    if (!site.ok()) return site;
    s.home_site = s.dataset_site;
    auto gb = CsvNumber(cells[8], at(8), 0, 1e7);
    if (!gb.ok()) return gb.status();
    s.dataset_gb = *gb;
    auto res = ParseResidency(cells[9].empty() ? "anywhere" : cells[9]);
    if (!res.ok()) return InvalidArgument(at(9) + ": " + res.status().message());
    s.residency = *res;
    if (!cells[10].empty()) {
      auto d = CsvNumber(cells[10], at(10), 1e-3, 1e6);
      if (!d.ok()) return d.status();
      s.deadline_h = *d;
    }
    s.command = "true";
    jobs.push_back(std::move(j));
  }
  if (jobs.empty()) return InvalidArgument(what + ": no jobs");
  return jobs;
}

Result<std::vector<WorkloadJob>> LoadWorkloadCsv(const std::string& path, const Catalog& catalog) {
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  return ParseWorkloadCsv(*text, path, catalog);
}

std::string WorkloadToCsv(const std::vector<WorkloadJob>& jobs) {
  std::string out = std::string(kWorkloadHeader) + "\n";
  for (const auto& j : jobs) {
    const JobSpec& s = j.spec;
    bool mapped = !j.mapped_from.empty();
    out += fmt::format("{:.3f},{},{},{},{:.6g},{},{:.3f},{},{:.6g},{},{},{}\n", j.arrival_s,
                       s.tenant, JobClassName(s.job_class), mapped ? j.mapped_from : s.accelerator,
                       s.work_fp16_eflop, s.cards, j.duration_s, s.dataset_site, s.dataset_gb,
                       ResidencyName(s.residency),
                       s.deadline_h ? fmt::format("{:.3f}", *s.deadline_h) : std::string(),
                       mapped ? fmt::format("{:.6g}", j.ref_fp16_tflops) : std::string());
  }
  return out;
}

std::vector<WorkloadJob> SyntheticWorkload(const SyntheticOptions& o) {
  std::mt19937_64 rng(o.seed);
  std::exponential_distribution<double> gap(o.arrivals_per_hour / 3600.0);
  std::uniform_real_distribution<double> u(0, 1);
  const int64_t gangs[] = {1, 1, 2, 4, 8, 8, 16, 32};
  std::vector<WorkloadJob> jobs;
  double t = 0;
  for (int64_t i = 0; i < o.jobs; ++i) {
    t += gap(rng);
    WorkloadJob j;
    j.arrival_s = t;
    JobSpec& s = j.spec;
    s.name = fmt::format("job-{}", i);
    s.tenant = o.tenants[static_cast<size_t>(u(rng) * static_cast<double>(o.tenants.size())) %
                         o.tenants.size()];
    s.job_class = u(rng) < o.training_share ? JobClass::kTraining
                  : u(rng) < 0.5            ? JobClass::kInference
                                            : JobClass::kBatch;
    s.cards = gangs[static_cast<size_t>(u(rng) * 8) % 8];
    s.software = {"pytorch"};
    double hours = std::exp(std::log(0.25) + u(rng) * (std::log(48.0) - std::log(0.25)));
    // Work such that an A800-class card (312 TFLOPS at 0.43) takes `hours`.
    s.work_fp16_eflop = static_cast<double>(s.cards) * 312e12 * 0.43 * hours * 3600 / 1e18;
    j.duration_s = hours * 3600 * (0.8 + 0.4 * u(rng));
    s.dataset_site = o.data_sites.empty() ? "" : o.data_sites[i % o.data_sites.size()];
    s.home_site = s.dataset_site;
    s.dataset_gb = u(rng) * o.max_dataset_gb;
    s.residency = u(rng) < 0.7 ? Residency::kCountry : Residency::kAnywhere;
    s.command = "true";
    jobs.push_back(std::move(j));
  }
  return jobs;
}

}  // namespace cpn::sim
