// SlurmExecutor: runs each cpn job as a Slurm batch job.
//
// A job becomes `sbatch` of a small script (the job's environment exported,
// then its command) in the pool's partition, with one task, its cards as GPU
// GRES, its working directory and its log file; Slurm picks the devices and
// sets CUDA_VISIBLE_DEVICES. Poll follows the job's state through `scontrol
// show job` (and the job-completion log through `sacct -c` once the
// controller has forgotten it); Kill is `scancel`. What sbatch refuses (an
// unknown partition, more GPUs than a node has) comes back as an error with
// Slurm's own words. Capacity reads the partition's nodes, GPUs and GPUs in
// use from `sinfo`, so the telemetry the platform senses is Slurm's. A job's
// time limit becomes `--time`; Recover finds the jobs an earlier agent
// submitted, by their name, after a restart.
// Talks to Slurm only through a CommandRunner.
#pragma once

#include <map>
#include <string>

#include "src/exec/command.h"
#include "src/exec/executor.h"

namespace cpn {

struct SlurmPartition {
  std::string name;
  int64_t nodes = 0, nodes_up = 0;
  int64_t gpus = 0, free_gpus = 0;  // on nodes that are up
};

class SlurmExecutor final : public Executor {
 public:
  // `partition_by_pool`: the Slurm partition behind each of the site's pools.
  SlurmExecutor(CommandRunner& runner, std::map<std::string, std::string> partition_by_pool,
                std::string gres_name = "gpu");

  Status Start(const ExecSpec& spec) override;
  Result<ExecResult> Poll(const std::string& job_id) override;
  Status Kill(const std::string& job_id) override;
  bool manages_devices() const override { return true; }
  std::optional<PoolCapacity> Capacity(const std::string& pool_id) override;
  // Finds the controller's jobs named cpn-<job id> (squeue), so a restarted
  // agent follows the jobs it submitted instead of losing them.
  Result<std::vector<std::string>> Recover() override;

  Result<SlurmPartition> Partition(const std::string& name);
  // The Slurm job id of a cpn job this executor started, or "".
  std::string SlurmId(const std::string& job_id) const;

 private:
  CommandRunner& run_;
  std::map<std::string, std::string> partition_by_pool_;
  std::string gres_;
  std::map<std::string, std::string> slurm_ids_;  // cpn job id -> Slurm job id
};

// Parses one GRES field of sinfo ("gpu:4", "gpu:a100:2(S:0-1)", "gpu:3(IDX:0-2)",
// "(null)") for the count of `name`; 0 if absent.
int64_t GresCount(const std::string& field, const std::string& name);

}  // namespace cpn
