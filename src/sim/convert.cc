#include "src/sim/convert.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>

namespace cpn::sim {
namespace {

// Reads a CSV whose first line must be `header`; calls row(cells, where) for
// each data line, where(col) naming file, line and column.
template <typename Row>
Status ForEachRow(const std::string& text, const std::string& what,
                  const std::vector<std::string>& header, Row row) {
  std::istringstream in(text);
  std::string line;
  int64_t n = 0;
  std::string joined;
  for (const auto& h : header) joined += (joined.empty() ? "" : ",") + h;
  while (std::getline(in, line)) {
    ++n;
    if (n == 1) {
      if (!line.empty() && static_cast<unsigned char>(line[0]) == 0xEF) line.erase(0, 3);  // BOM
      if (SplitCsvLine(line) != header) {
        return InvalidArgument(fmt::format("{}:1: expected the header '{}', got '{}'", what, joined,
                                           line.substr(0, 120)));
      }
      continue;
    }
    if (line.empty() || line == "\r") continue;
    auto cells = SplitCsvLine(line);
    if (cells.size() != header.size()) {
      return InvalidArgument(
          fmt::format("{}:{}: expected {} columns, got {}", what, n, header.size(), cells.size()));
    }
    auto where = [&, n](size_t col) { return fmt::format("{}:{}: {}", what, n, header[col]); };
    CPN_RETURN_IF_ERROR(row(cells, where));
  }
  if (n == 0) return InvalidArgument(what + ": empty file");
  return Status::Ok();
}

// Dense FP16 tensor TFLOPS per card of the GPU types in the Alibaba trace
// (vendor data sheets). G1-G3 are undisclosed internal codes: assumed
// T4-class, a cpn estimate.
double AlibabaTflops(const std::string& model, bool* assumed) {
  static const std::map<std::string, double> kTable = {
      {"V100M16", 125}, {"V100M32", 125}, {"P100", 18.7}, {"T4", 65}, {"A10", 125}};
  auto it = kTable.find(model);
  *assumed = it == kTable.end();
  return *assumed ? 65 : it->second;
}

// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
int64_t DaysFromCivil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

// "2023-11-16 18:17:03.9799600" to seconds since the epoch.
bool ParseTimestamp(const std::string& s, double* out) {
  int y = 0, mo = 0, d = 0, h = 0, mi = 0;
  double sec = 0;
  char tail = 0;
  if (std::sscanf(s.c_str(), "%4d-%2d-%2d %2d:%2d:%lf%c", &y, &mo, &d, &h, &mi, &sec, &tail) != 6) {
    return false;
  }
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec < 0 || sec >= 61) {
    return false;
  }
  *out = static_cast<double>(DaysFromCivil(y, mo, d)) * 86400 + h * 3600 + mi * 60 + sec;
  return true;
}

WorkloadJob MakeJob(double arrival_s, const std::string& tenant, JobClass cls, int64_t cards,
                    double duration_s, const std::string& card, double tflops, double share,
                    const ConvertOptions& o, size_t index) {
  WorkloadJob j;
  j.arrival_s = arrival_s;
  j.duration_s = duration_s;
  j.mapped_from = card;
  j.ref_fp16_tflops = tflops;
  JobSpec& s = j.spec;
  s.name = fmt::format("job-{}", index);
  s.tenant = tenant;
  s.job_class = cls;
  s.cards = cards;
  s.work_fp16_eflop = static_cast<double>(cards) * tflops * 1e12 *
                      AcceleratorModel{}.efficiency(cls) * duration_s * share / 1e18;
  s.dataset_site = o.data_sites.empty() ? "" : o.data_sites[index % o.data_sites.size()];
  s.home_site = s.dataset_site;
  s.dataset_gb = o.dataset_gb;
  s.residency = o.residency;
  s.command = "true";
  return j;
}

}  // namespace

Result<std::vector<WorkloadJob>> ConvertAlibabaGpuPods(
    const std::string& pods, const std::string& what, const std::string& nodes,
    const std::string& nodes_what, const ConvertOptions& o, ConvertSummary* summary) {
  if (o.data_sites.empty()) return InvalidArgument("at least one data site is needed");
  // The reference card of pods that name no GPU type.
  double ref_tflops = 65;
  std::string ref_name = "alibaba-openb-gpu";
  std::vector<std::string> notes;
  if (!nodes.empty()) {
    double gpus = 0, weighted = 0;
    std::map<std::string, int64_t> assumed;
    Status s = ForEachRow(nodes, nodes_what, {"sn", "cpu_milli", "memory_mib", "gpu", "model"},
                          [&](const std::vector<std::string>& c, auto where) -> Status {
                            auto n = CsvNumber(c[3], where(3), 0, 1024);
                            if (!n.ok()) return n.status();
                            if (*n == 0) return Status::Ok();
                            bool guess = false;
                            double t = AlibabaTflops(c[4], &guess);
                            if (guess) assumed[c[4]] += static_cast<int64_t>(*n);
                            gpus += *n;
                            weighted += *n * t;
                            return Status::Ok();
                          });
    CPN_RETURN_IF_ERROR(s);
    if (gpus > 0) ref_tflops = weighted / gpus;
    for (const auto& [m, n] : assumed) {
      notes.push_back(fmt::format(
          "{} GPUs of undisclosed type '{}' counted at 65 FP16 TFLOPS (T4-class, an estimate)", n,
          m));
    }
    notes.push_back(fmt::format(
        "pods without a GPU type ran on the cluster's mean card: {:.1f} FP16 TFLOPS over {:.0f} "
        "GPUs",
        ref_tflops, gpus));
  } else {
    notes.push_back(
        "no node list given: pods without a GPU type are taken to have run on a 65 FP16 TFLOPS "
        "card (T4-class)");
  }
  std::vector<std::pair<double, WorkloadJob>> rows;
  int64_t cpu_only = 0, never_ran = 0, fractional = 0, data_rows = 0;
  Status s = ForEachRow(
      pods, what,
      {"name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli", "gpu_spec", "qos", "pod_phase",
       "creation_time", "deletion_time", "scheduled_time"},
      [&](const std::vector<std::string>& c, auto where) -> Status {
        data_rows++;
        auto num_gpu = CsvNumber(c[3], where(3), 0, kMaxCardsPerJob);
        if (!num_gpu.ok()) return num_gpu.status();
        auto created = CsvNumber(c[8], where(8), 0, 1e10);
        if (!created.ok()) return created.status();
        if (*num_gpu == 0) {
          cpu_only++;
          return Status::Ok();
        }
        if (c[10].empty() || c[9].empty()) {
          never_ran++;  // pending at the end of the trace
          return Status::Ok();
        }
        auto scheduled = CsvNumber(c[10], where(10), 0, 1e10);
        if (!scheduled.ok()) return scheduled.status();
        auto deleted = CsvNumber(c[9], where(9), 0, 1e10);
        if (!deleted.ok()) return deleted.status();
        if (*deleted <= *scheduled) {
          never_ran++;
          return Status::Ok();
        }
        auto milli = CsvNumber(c[4], where(4), 0, 1000);
        if (!milli.ok()) return milli.status();
        double share = 1;
        if (*num_gpu == 1 && *milli > 0 && *milli < 1000) {
          share = *milli / 1000;  // a GPU-sharing pod: a whole card in cpn, same lifetime
          fractional++;
        }
        std::string card = ref_name;
        double tflops = ref_tflops;
        if (!c[5].empty() && c[5] != "nan") {
          card = c[5].substr(0, c[5].find('|'));  // the first allowed type
          bool guess = false;
          tflops = AlibabaTflops(card, &guess);
        }
        const std::string& qos = c[6];
        JobClass cls = qos == "LS"   ? JobClass::kInference
                       : qos == "BE" ? JobClass::kBatch
                                     : JobClass::kTraining;
        std::string tenant = "alibaba-";
        for (char ch : qos)
          tenant += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        if (qos.empty()) tenant += "unknown";
        rows.push_back(
            {*created, MakeJob(*created, tenant, cls, static_cast<int64_t>(*num_gpu),
                               *deleted - *scheduled, card, tflops, share, o, rows.size())});
        return Status::Ok();
      });
  CPN_RETURN_IF_ERROR(s);
  std::stable_sort(rows.begin(), rows.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<WorkloadJob> jobs;
  jobs.reserve(rows.size());
  for (auto& [t, j] : rows) jobs.push_back(std::move(j));
  if (jobs.empty()) return InvalidArgument(what + ": no GPU pod that ran");
  if (summary != nullptr) {
    summary->rows = data_rows;
    summary->jobs = static_cast<int64_t>(jobs.size());
    summary->notes = notes;
    summary->notes.push_back(
        fmt::format("skipped {} CPU-only pods and {} pods that never ran", cpu_only, never_ran));
    summary->notes.push_back(fmt::format(
        "{} GPU-sharing pods (gpu_milli < 1000) take a whole card and keep their lifetime",
        fractional));
    summary->notes.push_back(
        fmt::format("data homes dealt in turn to {} site(s)", o.data_sites.size()));
  }
  return jobs;
}

Result<std::vector<WorkloadJob>> ConvertAzureLlmInference(const std::string& text,
                                                          const std::string& what,
                                                          const ConvertOptions& o,
                                                          ConvertSummary* summary) {
  if (o.data_sites.empty()) return InvalidArgument("at least one data site is needed");
  std::vector<WorkloadJob> jobs;
  double first = -1, last = -1;
  Status s = ForEachRow(
      text, what, {"TIMESTAMP", "ContextTokens", "GeneratedTokens"},
      [&](const std::vector<std::string>& c, auto where) -> Status {
        double t = 0;
        if (!ParseTimestamp(c[0], &t)) {
          return InvalidArgument(where(0) + ": expected 'YYYY-MM-DD hh:mm:ss[.fraction]', got '" +
                                 c[0].substr(0, 40) + "'");
        }
        if (first < 0) first = t;
        if (t < last) return InvalidArgument(where(0) + ": timestamps must not decrease");
        last = t;
        auto ctx = CsvNumber(c[1], where(1), 0, 1e8);
        if (!ctx.ok()) return ctx.status();
        auto gen = CsvNumber(c[2], where(2), 0, 1e8);
        if (!gen.ok()) return gen.status();
        // A dense transformer spends about 2 FLOPs per parameter per token.
        double flop = 2 * o.model_params_b * 1e9 * (*ctx + *gen);
        double eff = AcceleratorModel{}.efficiency(JobClass::kInference);
        double duration =
            std::max(1e-3, flop / (static_cast<double>(o.cards) * o.ref_fp16_tflops * 1e12 * eff));
        WorkloadJob j = MakeJob(t - first, "azure-code", JobClass::kInference, o.cards, duration,
                                "", 0, 1, o, jobs.size());
        j.mapped_from.clear();
        j.ref_fp16_tflops = 0;
        j.spec.work_fp16_eflop = flop / 1e18;
        jobs.push_back(std::move(j));
        return Status::Ok();
      });
  CPN_RETURN_IF_ERROR(s);
  if (jobs.empty()) return InvalidArgument(what + ": no requests");
  if (summary != nullptr) {
    summary->rows = summary->jobs = static_cast<int64_t>(jobs.size());
    summary->notes.push_back(fmt::format(
        "each request is one inference job of {} card(s): work = 2 x {:g}B parameters x (context "
        "+ generated tokens); its duration is that work on a {:g} FP16 TFLOPS card at the "
        "inference efficiency ({:g}); decode's memory-bound time is not modelled",
        o.cards, o.model_params_b, o.ref_fp16_tflops,
        AcceleratorModel{}.efficiency(JobClass::kInference)));
    summary->notes.push_back(
        fmt::format("{:.0f} s of requests; data homes dealt in turn to {} "
                    "site(s)",
                    last - first, o.data_sites.size()));
  }
  return jobs;
}

}  // namespace cpn::sim
