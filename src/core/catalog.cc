#include "src/core/catalog.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "src/core/data_dir.h"
#include "src/core/ids.h"

namespace cpn {

std::string_view JobClassName(JobClass c) {
  switch (c) {
    case JobClass::kTraining:
      return "training";
    case JobClass::kInference:
      return "inference";
    case JobClass::kBatch:
      return "batch";
  }
  return "training";
}

Result<JobClass> ParseJobClass(std::string_view text) {
  if (text == "training") return JobClass::kTraining;
  if (text == "inference") return JobClass::kInference;
  if (text == "batch") return JobClass::kBatch;
  return InvalidArgument(
      fmt::format("unknown job class '{}' (expected training, inference or batch)", text));
}

double AcceleratorModel::fp16_equivalent_tflops() const {
  if (fp16_tflops) return *fp16_tflops;
  return fp32_tflops.value_or(0.0);
}

double AcceleratorModel::efficiency(JobClass c) const {
  switch (c) {
    case JobClass::kTraining:
      return efficiency_training;
    case JobClass::kInference:
      return efficiency_inference;
    case JobClass::kBatch:
      return efficiency_batch;
  }
  return efficiency_training;
}

bool AcceleratorModel::HasSoftware(const std::string& name) const {
  return std::find(software.begin(), software.end(), name) != software.end();
}

std::string AcceleratorModel::SourceOf(const std::string& figure) const {
  auto it = sources.find(figure);
  if (it != sources.end()) return it->second;
  it = sources.find("*");
  return it == sources.end() ? "" : it->second;
}

namespace {

const std::set<std::string> kKinds = {"gpu", "npu", "mlu", "dcu", "cpu"};
const std::set<std::string> kFigures = {"*",           "fp64_tflops",          "fp32_tflops",
                                        "fp16_tflops", "fp8_tflops",           "int8_tops",
                                        "memory_gb",   "memory_bandwidth_gbs", "board_power_w",
                                        "efficiency",  "server_price_cny"};

Result<AcceleratorModel> ModelFromJson(const Json& j, const std::string& path) {
  AcceleratorModel m;
  FieldReader r(j, path);
  r.String("id", &m.id);
  r.String("vendor", &m.vendor);
  r.String("name", &m.name);
  r.String("kind", &m.kind);
  r.String("market", &m.market);
  r.OptionalNumber("fp64_tflops", &m.fp64_tflops, 0, 1e6);
  r.OptionalNumber("fp32_tflops", &m.fp32_tflops, 0, 1e6);
  r.OptionalNumber("fp16_tflops", &m.fp16_tflops, 0, 1e6);
  r.OptionalNumber("fp8_tflops", &m.fp8_tflops, 0, 1e6);
  r.OptionalNumber("int8_tops", &m.int8_tops, 0, 1e6);
  r.Number("memory_gb", &m.memory_gb, 0, 1e5);
  r.Number("memory_bandwidth_gbs", &m.memory_bandwidth_gbs, 0, 1e6);
  r.Number("board_power_w", &m.board_power_w, 1, 1e5);
  r.StringList("software", &m.software);
  r.Number("server_price_cny", &m.server_price_cny, 0, 1e9, false);
  r.Int("cards_per_server", &m.cards_per_server, 1, 64, false);
  if (const Json* e = r.Object("efficiency")) {
    FieldReader er(*e, r.FieldPath("efficiency"));
    er.Number("training", &m.efficiency_training, 0.01, 1);
    er.Number("inference", &m.efficiency_inference, 0.01, 1);
    er.Number("batch", &m.efficiency_batch, 0.01, 1);
    r.Fail(er.Finish());
  }
  if (const Json* s = r.Object("sources")) {
    for (auto it = s->begin(); it != s->end(); ++it) {
      if (kFigures.count(it.key()) == 0) {
        r.FailField("sources." + it.key(), "not a figure of an accelerator");
      } else if (!it->is_string() || it->get<std::string>().empty()) {
        r.FailField("sources." + it.key(), "expected a non-empty citation string");
      } else {
        m.sources[it.key()] = it->get<std::string>();
      }
    }
  }
  CPN_RETURN_IF_ERROR(r.Finish());
  if (!IsValidLabel(m.id)) {
    return InvalidArgument(r.FieldPath("id") + ": '" + m.id + "' must be 1-63 of [a-z0-9-]");
  }
  if (kKinds.count(m.kind) == 0) {
    return InvalidArgument(r.FieldPath("kind") + ": expected gpu, npu, mlu, dcu or cpu, got '" +
                           m.kind + "'");
  }
  if (m.fp16_equivalent_tflops() <= 0) {
    return InvalidArgument(path + ": needs fp16_tflops or fp32_tflops to rate its capacity");
  }
  if (m.sources.count("*") == 0) {
    return InvalidArgument(r.FieldPath("sources") + ": needs a \"*\" citation for its figures");
  }
  return m;
}

}  // namespace

Result<Catalog> Catalog::FromJson(const Json& doc, const std::string& what) {
  Catalog c;
  FieldReader r(doc, what);
  int64_t version = 0;
  r.Int("version", &version, 1, 1);
  r.Ignore("notes");
  const Json* list = r.Array("accelerators");
  CPN_RETURN_IF_ERROR(r.Finish());
  std::set<std::string> ids;
  for (size_t i = 0; i < list->size(); ++i) {
    auto m = ModelFromJson((*list)[i], fmt::format("{}.accelerators[{}]", what, i));
    if (!m.ok()) return m.status();
    if (!ids.insert(m->id).second) {
      return InvalidArgument(
          fmt::format("{}.accelerators[{}].id: duplicate id '{}'", what, i, m->id));
    }
    c.models_.push_back(std::move(m).value());
  }
  std::sort(c.models_.begin(), c.models_.end(),
            [](const auto& a, const auto& b) { return a.id < b.id; });
  return c;
}

Result<Catalog> Catalog::LoadFile(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  auto doc = ParseJson(*text, path);
  if (!doc.ok()) return doc.status();
  return FromJson(*doc, path);
}

Result<Catalog> Catalog::LoadDefault() {
  auto dir = FindDataDir();
  if (!dir.ok()) return dir.status();
  return LoadFile(*dir + "/catalog/accelerators.json");
}

const AcceleratorModel* Catalog::Find(std::string_view id) const {
  auto it =
      std::lower_bound(models_.begin(), models_.end(), id,
                       [](const AcceleratorModel& m, std::string_view k) { return m.id < k; });
  return (it != models_.end() && it->id == id) ? &*it : nullptr;
}

void Catalog::SetEfficiency(size_t i, JobClass c, double e) {
  AcceleratorModel& m = models_.at(i);
  switch (c) {
    case JobClass::kTraining:
      m.efficiency_training = e;
      break;
    case JobClass::kInference:
      m.efficiency_inference = e;
      break;
    case JobClass::kBatch:
      m.efficiency_batch = e;
      break;
  }
}

Json AcceleratorToJson(const AcceleratorModel& m) {
  Json j;
  j["id"] = m.id;
  j["vendor"] = m.vendor;
  j["name"] = m.name;
  j["kind"] = m.kind;
  j["market"] = m.market;
  auto opt = [&](const char* k, const std::optional<double>& v) {
    j[k] = v ? Json(*v) : Json(nullptr);
  };
  opt("fp64_tflops", m.fp64_tflops);
  opt("fp32_tflops", m.fp32_tflops);
  opt("fp16_tflops", m.fp16_tflops);
  opt("fp8_tflops", m.fp8_tflops);
  opt("int8_tops", m.int8_tops);
  j["fp16_equivalent_tflops"] = m.fp16_equivalent_tflops();
  j["fp16_equivalent_basis"] = m.fp16_is_native() ? "fp16" : "fp32";
  j["memory_gb"] = m.memory_gb;
  j["memory_bandwidth_gbs"] = m.memory_bandwidth_gbs;
  j["board_power_w"] = m.board_power_w;
  j["software"] = m.software;
  j["efficiency"] = {{"training", m.efficiency_training},
                     {"inference", m.efficiency_inference},
                     {"batch", m.efficiency_batch}};
  j["server_price_cny"] = m.server_price_cny;
  j["cards_per_server"] = m.cards_per_server;
  j["sources"] = m.sources;
  return j;
}

Json Catalog::ToJson() const {
  Json list = Json::array();
  for (const auto& m : models_) list.push_back(AcceleratorToJson(m));
  return Json{{"version", 1}, {"accelerators", list}};
}

}  // namespace cpn
