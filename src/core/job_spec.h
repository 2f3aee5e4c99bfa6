// JobSpec: what a tenant asks the network to run, validated at the edge.
//
// A job asks either for an explicit gang (`accelerator` x `cards`, all cards in
// one pool) or for `cards` of any accelerator that meets its memory and
// software constraints. Its size is FP16 work (EFLOP), from which the
// scheduler estimates run time on each candidate. It names where its dataset
// lives and how far the data may travel (residency), and optionally a
// deadline, a budget, a policy and a priority. `run` says what the executor
// starts. JobSpecFromJson rejects unknown fields and out-of-range values with
// the field's path. Plain value.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "src/core/catalog.h"
#include "src/core/json_reader.h"
#include "src/core/status.h"

namespace cpn {

enum class Policy { kCheapest, kFastest, kGreenest, kBalanced };
std::string_view PolicyName(Policy p);
Result<Policy> ParsePolicy(std::string_view text);

// How far a job's data may travel from its home site.
enum class Residency { kAnywhere, kCountry, kProvince, kSite };
std::string_view ResidencyName(Residency r);
Result<Residency> ParseResidency(std::string_view text);

// A dataset's classification and the residency rule it carries (the
// platform's policy, after China's data laws): public -> anywhere;
// internal -> country; personal (personal information, PIPL) -> country;
// important (important data, DSL) -> province; core (core data) -> site.
// A job's effective residency is the stricter of its own and its data's.
inline constexpr const char* kClassifications[] = {"public", "internal", "personal", "important",
                                                   "core"};
Result<Residency> ClassificationResidency(std::string_view classification);

inline constexpr int64_t kMaxCardsPerJob = 65536;

struct JobSpec {
  std::string name;
  std::string tenant;
  JobClass job_class = JobClass::kTraining;

  std::string accelerator;  // catalog id; empty = any that fits
  int64_t cards = 1;
  double min_memory_gb = 0;  // per card
  std::vector<std::string> software;

  double work_fp16_eflop = 0;  // total FP16 work, 1e18 FLOP

  std::string dataset_site;  // site id where the data lives
  double dataset_gb = 0;
  // The dataset's directory under the data site's data root; when set, a job
  // placed elsewhere has it copied there (staged) before it starts, and
  // CPN_DATASET_DIR tells the job where it is.
  std::string dataset_path;
  // Sites that already hold a verified copy: staging there is free.
  std::vector<std::string> dataset_replicas;
  Residency residency = Residency::kAnywhere;  // already the stricter of the two
  std::string classification;                  // "" = unclassified (public)
  std::string home_site;  // submitter's own site for comparison; defaults to dataset_site

  std::optional<double> deadline_h;
  std::optional<double> budget_cny;
  Policy policy = Policy::kBalanced;
  int64_t priority = 0;
  // May be stopped and requeued to make room for a higher-priority job.
  bool preemptible = false;

  std::string command;
  std::map<std::string, std::string> env;
  std::string workdir;
  // Wall-clock limit at the site (Slurm's --time); past it the job is
  // stopped and fails with TIMEOUT.
  std::optional<double> time_limit_h;
};

// Parses and validates; `catalog` checks the accelerator name.
Result<JobSpec> JobSpecFromJson(const Json& j, const Catalog& catalog,
                                const std::string& path = "job");
Json JobSpecToJson(const JobSpec& s);

// A job or tenant name: 1-128 characters of [A-Za-z0-9._-].
bool IsValidName(const std::string& s);

// A relative path that stays below its root: no leading '/', no empty, '.'
// or '..' parts, at most 1024 characters.
bool IsSafeRelativePath(const std::string& path);

}  // namespace cpn
