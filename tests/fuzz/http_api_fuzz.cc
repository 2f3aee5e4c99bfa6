// Fuzzes the server's whole input path: bytes off a connection are parsed as
// the server parses them (header and body limits included), then handed to
// the REST API over a platform with an in-memory store. Whatever arrives,
// the server must answer with a status in 200..599 and, for an error, the
// one JSON error shape; a crash, a leak or undefined behaviour is a finding.
#include <fmt/format.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string_view>

#include "src/core/clock.h"
#include "src/net/http_server.h"
#include "src/server/api.h"
#include "src/store/sqlite_store.h"
#include "src/testing/fixtures.h"

namespace {

struct World {
  cpn::FakeClock clock;
  cpn::Catalog catalog = cpn::testing::TestCatalog();
  cpn::Topology network = cpn::testing::TestTopology(catalog);
  std::unique_ptr<cpn::SqliteStore> store = std::move(cpn::SqliteStore::Open(":memory:")).value();
  int64_t next_id = 0;
  cpn::Platform platform{*store, clock, catalog, network,
                         [this] { return fmt::format("job-{:012x}", ++next_id); }};
  cpn::Api api{platform};
  World() {
    for (const auto& s : network.sites()) {
      cpn::net::HttpRequest r;
      r.method = "POST";
      r.target = "/v1/sites";
      r.headers["content-type"] = "application/json";
      r.body = cpn::SiteToJson(s).dump();
      if (api.Handle(r).status != 200) std::abort();
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World* world = new World();  // one platform for the run, as a server has
  auto req = cpn::net::ParseHttpRequest(std::string_view(reinterpret_cast<const char*>(data), size),
                                        64 * 1024);
  if (!req.ok()) return 0;
  cpn::net::HttpResponse resp = cpn::net::AwaitSendAfter(world->api.Handle(*req));
  if (resp.status < 200 || resp.status > 599) std::abort();
  if (resp.status >= 400 && resp.content_type == "application/json") {
    auto j = cpn::Json::parse(resp.body, nullptr, false);
    if (!j.is_object() || !j.contains("error") || !j["error"].contains("message")) std::abort();
  }
  // Time moves so leases, rounds and rate windows are exercised too.
  world->clock.AdvanceMs(size % 2000);
  (void)world->platform.Tick();
  return 0;
}
