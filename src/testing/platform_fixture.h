// A platform over the small test catalog and topology, an in-memory store
// and a fake clock, with job ids job-000000000001, ...: the world the server
// tests share, as a base for their fixtures. Header-only, so cpn_testing
// need not link the server.
#pragma once

#include <fmt/format.h>

#include <memory>

#include "src/core/clock.h"
#include "src/server/platform.h"
#include "src/store/sqlite_store.h"
#include "src/testing/fixtures.h"

namespace cpn::testing {

class PlatformWorld {
 public:
  // A 7.2 EFLOP training job with its 100 GB of data in Beijing (bj-1), to
  // stay in the country, cheapest first.
  static JobSpec TrainingJob(const std::string& tenant = "t", int64_t cards = 4,
                             const std::string& accelerator = "test-gpu") {
    JobSpec j;
    j.name = "train";
    j.tenant = tenant;
    j.accelerator = accelerator;
    j.cards = cards;
    j.work_fp16_eflop = 7.2;
    j.dataset_site = j.home_site = "cpn:cn.bj/acme/bj-1";
    j.dataset_gb = 100;
    j.residency = Residency::kCountry;
    j.policy = Policy::kCheapest;
    j.command = "true";
    return j;
  }

 protected:
  PlatformWorld()
      : catalog_(TestCatalog()),
        network_(TestTopology(catalog_)),
        store_(std::move(SqliteStore::Open(":memory:")).value()),
        platform_(*store_, clock_, catalog_, network_,
                  [this] { return fmt::format("job-{:012x}", ++next_id_); }) {}

  FakeClock clock_;
  Catalog catalog_;
  Topology network_;
  std::unique_ptr<SqliteStore> store_;
  int next_id_ = 0;
  Platform platform_;
};

}  // namespace cpn::testing
