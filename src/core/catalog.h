// Accelerator catalog: the vendor-neutral description of every chip cpn knows.
//
// Loaded from data/catalog/accelerators.json. Each model carries its published
// peak rates (dense, no sparsity), memory, memory bandwidth, board power and
// software stack, and for every figure the source it came from. cpn's standard
// capacity unit is FP16-equivalent dense TFLOPS: the FP16/BF16 peak where the
// vendor publishes one, otherwise FP32 (CPUs, older parts), and the model says
// which. A Catalog is immutable after loading and safe to share across threads.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "src/core/json_reader.h"
#include "src/core/status.h"

namespace cpn {

enum class JobClass { kTraining, kInference, kBatch };
std::string_view JobClassName(JobClass c);
Result<JobClass> ParseJobClass(std::string_view text);

struct AcceleratorModel {
  std::string id;      // "nvidia-h100-sxm"
  std::string vendor;  // "NVIDIA"
  std::string name;    // "H100 SXM5 80GB"
  std::string kind;    // gpu | npu | mlu | dcu | cpu
  std::string market;  // global | china
  std::optional<double> fp64_tflops, fp32_tflops, fp16_tflops, fp8_tflops, int8_tops;
  double memory_gb = 0;
  double memory_bandwidth_gbs = 0;
  double board_power_w = 0;
  std::vector<std::string> software;
  // Fraction of FP16-equivalent peak a job of each class sustains; starting
  // values (estimates), to be replaced by measured ones as jobs complete.
  double efficiency_training = 0.4, efficiency_inference = 0.3, efficiency_batch = 0.5;
  // Estimated list price of one 8-card (or 2-socket) server, CNY; 0 if unknown.
  double server_price_cny = 0;
  int64_t cards_per_server = 8;
  // figure name -> citation; "*" covers figures not listed.
  std::map<std::string, std::string> sources;

  double fp16_equivalent_tflops() const;
  bool fp16_is_native() const { return fp16_tflops.has_value(); }
  double efficiency(JobClass c) const;
  bool HasSoftware(const std::string& name) const;
  std::string SourceOf(const std::string& figure) const;
};

class Catalog {
 public:
  static Result<Catalog> FromJson(const Json& doc, const std::string& what);
  static Result<Catalog> LoadFile(const std::string& path);
  // Loads data/catalog/accelerators.json from the data directory.
  static Result<Catalog> LoadDefault();

  const AcceleratorModel* Find(std::string_view id) const;
  // Index of `m` in models(); `m` must belong to this catalog.
  size_t IndexOf(const AcceleratorModel* m) const {
    return static_cast<size_t>(m - models_.data());
  }
  // Replaces one model's efficiency for a job class (measured values).
  void SetEfficiency(size_t model_index, JobClass job_class, double efficiency);
  const std::vector<AcceleratorModel>& models() const { return models_; }
  Json ToJson() const;

 private:
  std::vector<AcceleratorModel> models_;
};

Json AcceleratorToJson(const AcceleratorModel& m);

}  // namespace cpn
