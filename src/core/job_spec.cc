#include "src/core/job_spec.h"

#include <fmt/format.h>

#include "src/core/ids.h"

namespace cpn {

bool IsSafeRelativePath(const std::string& path) {
  if (path.empty() || path.size() > 1024 || path.front() == '/') return false;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    std::string part = path.substr(start, end - start);
    if (part.empty() || part == "." || part == ".." || part.find('\0') != std::string::npos) {
      return false;
    }
    start = end + 1;
  }
  return true;
}

std::string_view PolicyName(Policy p) {
  switch (p) {
    case Policy::kCheapest:
      return "cheapest";
    case Policy::kFastest:
      return "fastest";
    case Policy::kGreenest:
      return "greenest";
    case Policy::kBalanced:
      return "balanced";
  }
  return "balanced";
}

Result<Policy> ParsePolicy(std::string_view t) {
  if (t == "cheapest") return Policy::kCheapest;
  if (t == "fastest") return Policy::kFastest;
  if (t == "greenest") return Policy::kGreenest;
  if (t == "balanced") return Policy::kBalanced;
  return InvalidArgument(
      fmt::format("unknown policy '{}' (expected cheapest, fastest, greenest or balanced)", t));
}

std::string_view ResidencyName(Residency r) {
  switch (r) {
    case Residency::kAnywhere:
      return "anywhere";
    case Residency::kCountry:
      return "country";
    case Residency::kProvince:
      return "province";
    case Residency::kSite:
      return "site";
  }
  return "anywhere";
}

Result<Residency> ClassificationResidency(std::string_view c) {
  if (c == "public") return Residency::kAnywhere;
  if (c == "internal" || c == "personal") return Residency::kCountry;
  if (c == "important") return Residency::kProvince;
  if (c == "core") return Residency::kSite;
  return InvalidArgument(
      fmt::format("unknown classification '{}' (expected public, internal, personal, important "
                  "or core)",
                  c.substr(0, 32)));
}

Result<Residency> ParseResidency(std::string_view t) {
  if (t == "anywhere") return Residency::kAnywhere;
  if (t == "country") return Residency::kCountry;
  if (t == "province") return Residency::kProvince;
  if (t == "site") return Residency::kSite;
  return InvalidArgument(
      fmt::format("unknown residency '{}' (expected anywhere, country, province or site)", t));
}

bool IsValidName(const std::string& s) {
  if (s.empty() || s.size() > 128) return false;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

namespace {

bool IsValidEnvName(const std::string& s) {
  if (s.empty() || s.size() > 128 || (s[0] >= '0' && s[0] <= '9')) return false;
  for (char c : s) {
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
      return false;
  }
  return true;
}

}  // namespace

Result<JobSpec> JobSpecFromJson(const Json& j, const Catalog& catalog, const std::string& path) {
  JobSpec s;
  FieldReader r(j, path);
  std::string cls = "training", policy = "balanced";
  r.String("name", &s.name);
  r.String("tenant", &s.tenant);
  r.String("class", &cls, false);
  r.String("policy", &policy, false);
  r.Int("priority", &s.priority, -100, 100, false);
  r.Bool("preemptible", &s.preemptible, false);
  r.OptionalNumber("deadline_h", &s.deadline_h, 0.001, 24 * 366);
  r.OptionalNumber("budget_cny", &s.budget_cny, 0, 1e10);
  if (r.ok() && !IsValidName(s.name)) {
    r.FailField("name", "expected 1-128 characters of [A-Za-z0-9._-]");
  }
  if (r.ok() && !IsValidName(s.tenant)) {
    r.FailField("tenant", "expected 1-128 characters of [A-Za-z0-9._-]");
  }
  if (r.ok()) {
    auto c = ParseJobClass(cls);
    if (!c.ok())
      r.FailField("class", c.status().message());
    else
      s.job_class = *c;
    auto p = ParsePolicy(policy);
    if (!p.ok())
      r.FailField("policy", p.status().message());
    else
      s.policy = *p;
  }

  if (const Json* res = r.Object("resources")) {
    FieldReader rr(*res, r.FieldPath("resources"));
    rr.String("accelerator", &s.accelerator, false);
    rr.Int("cards", &s.cards, 1, kMaxCardsPerJob);
    rr.Number("min_memory_gb", &s.min_memory_gb, 0, 100'000, false);
    rr.StringList("software", &s.software, false);
    if (rr.ok() && !s.accelerator.empty() && catalog.Find(s.accelerator) == nullptr) {
      rr.FailField("accelerator", "unknown accelerator '" + s.accelerator +
                                      "' (see `cpn catalog` for the known ids)");
    }
    r.Fail(rr.Finish());
  }
  if (const Json* w = r.Object("work")) {
    FieldReader wr(*w, r.FieldPath("work"));
    wr.Number("fp16_eflop", &s.work_fp16_eflop, 1e-9, 1e9);
    r.Fail(wr.Finish());
  }
  if (const Json* d = r.Object("dataset")) {
    FieldReader dr(*d, r.FieldPath("dataset"));
    std::string residency = "anywhere";
    dr.String("site", &s.dataset_site);
    dr.Number("size_gb", &s.dataset_gb, 0, 1e7);
    dr.String("residency", &residency, false);
    dr.StringList("replicas", &s.dataset_replicas, false);
    dr.String("path", &s.dataset_path, false);
    dr.String("classification", &s.classification, false);
    if (dr.ok()) dr.Fail(ValidateSiteId(s.dataset_site, dr.FieldPath("site")));
    if (dr.ok() && !s.dataset_path.empty() && !IsSafeRelativePath(s.dataset_path)) {
      dr.FailField("path",
                   "expected a relative path under the site's data root: no leading '/', no "
                   "empty, '.' or '..' parts, at most 1024 characters");
    }
    if (dr.ok() && s.dataset_replicas.size() > 64) dr.FailField("replicas", "at most 64 sites");
    for (size_t i = 0; dr.ok() && i < s.dataset_replicas.size(); ++i) {
      dr.Fail(ValidateSiteId(s.dataset_replicas[i],
                             dr.FieldPath("replicas") + "[" + std::to_string(i) + "]"));
    }
    if (dr.ok()) {
      auto rv = ParseResidency(residency);
      if (!rv.ok())
        dr.FailField("residency", rv.status().message());
      else
        s.residency = *rv;
    }
    if (dr.ok() && !s.classification.empty()) {
      auto rule = ClassificationResidency(s.classification);
      if (!rule.ok()) {
        dr.FailField("classification", rule.status().message());
      } else if (static_cast<int>(*rule) > static_cast<int>(s.residency)) {
        s.residency = *rule;  // the data's rule is stricter than the job asked
      }
    }
    r.Fail(dr.Finish());
  }
  r.String("home_site", &s.home_site, false);
  if (r.ok() && !s.home_site.empty()) r.Fail(ValidateSiteId(s.home_site, r.FieldPath("home_site")));
  if (s.home_site.empty()) s.home_site = s.dataset_site;

  if (const Json* run = r.Object("run")) {
    FieldReader xr(*run, r.FieldPath("run"));
    xr.String("command", &s.command);
    xr.String("workdir", &s.workdir, false);
    xr.OptionalNumber("time_limit_h", &s.time_limit_h, 1.0 / 3600, 8760);
    if (const Json* env = xr.Object("env", false)) {
      if (env->size() > 256) xr.FailField("env", "at most 256 variables");
      for (auto it = env->begin(); it != env->end() && xr.ok(); ++it) {
        if (!IsValidEnvName(it.key())) {
          xr.FailField("env", "'" + it.key().substr(0, 64) + "' is not a valid variable name");
        } else if (!it->is_string()) {
          xr.FailField("env." + it.key(), "expected a string, got " + JsonTypeName(*it));
        } else {
          s.env[it.key()] = it->get<std::string>();
        }
      }
    }
    if (xr.ok() && s.command.empty()) xr.FailField("command", "must not be empty");
    if (xr.ok() && !s.workdir.empty() && s.workdir.find("..") != std::string::npos) {
      xr.FailField("workdir", "must not contain '..'");
    }
    r.Fail(xr.Finish());
  }
  CPN_RETURN_IF_ERROR(r.Finish());
  return s;
}

Json JobSpecToJson(const JobSpec& s) {
  Json res{{"cards", s.cards}};
  if (!s.accelerator.empty()) res["accelerator"] = s.accelerator;
  if (s.min_memory_gb > 0) res["min_memory_gb"] = s.min_memory_gb;
  if (!s.software.empty()) res["software"] = s.software;
  Json j{{"name", s.name},
         {"tenant", s.tenant},
         {"class", JobClassName(s.job_class)},
         {"policy", PolicyName(s.policy)},
         {"priority", s.priority},
         {"preemptible", s.preemptible},
         {"resources", res},
         {"work", {{"fp16_eflop", s.work_fp16_eflop}}},
         {"dataset",
          {{"site", s.dataset_site},
           {"size_gb", s.dataset_gb},
           {"residency", ResidencyName(s.residency)}}},
         {"home_site", s.home_site},
         {"run", {{"command", s.command}}}};
  if (!s.env.empty()) j["run"]["env"] = s.env;
  if (!s.workdir.empty()) j["run"]["workdir"] = s.workdir;
  if (s.time_limit_h) j["run"]["time_limit_h"] = *s.time_limit_h;
  if (!s.dataset_replicas.empty()) j["dataset"]["replicas"] = s.dataset_replicas;
  if (!s.dataset_path.empty()) j["dataset"]["path"] = s.dataset_path;
  if (!s.classification.empty()) j["dataset"]["classification"] = s.classification;
  if (s.deadline_h) j["deadline_h"] = *s.deadline_h;
  if (s.budget_cny) j["budget_cny"] = *s.budget_cny;
  return j;
}

}  // namespace cpn
