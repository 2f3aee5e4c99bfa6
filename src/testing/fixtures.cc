#include "src/testing/fixtures.h"

#include <cstdlib>

namespace cpn::testing {

Catalog TestCatalog() {
  Json doc = Json::parse(R"({"version":1,"accelerators":[
    {"id":"test-gpu","vendor":"T","name":"Test GPU","kind":"gpu","market":"global",
     "fp16_tflops":100,"fp32_tflops":25,"memory_gb":80,"memory_bandwidth_gbs":2000,
     "board_power_w":400,"software":["cuda","pytorch"],
     "efficiency":{"training":0.5,"inference":0.25,"batch":0.5},
     "server_price_cny":800000,"sources":{"*":"test"}},
    {"id":"test-npu","vendor":"T","name":"Test NPU","kind":"npu","market":"china",
     "fp16_tflops":200,"memory_gb":32,"memory_bandwidth_gbs":1000,
     "board_power_w":300,"software":["cann","pytorch"],
     "efficiency":{"training":0.5,"inference":0.25,"batch":0.5},"sources":{"*":"test"}}]})");
  auto c = Catalog::FromJson(doc, "test-catalog");
  if (!c.ok()) std::abort();
  return std::move(c).value();
}

Topology TestTopology(const Catalog& catalog) {
  Json doc = Json::parse(R"({"version":1,
   "sites":[
    {"id":"cpn:cn.bj/acme/bj-1","name":"east","area":"jjj","jurisdiction":"CN-BJ","pue":1.5,
     "electricity_cny_per_kwh":0.8,"carbon_kg_per_kwh":0.6,"green_share":0,
     "pools":[{"id":"cpn:cn.bj/acme/bj-1/gpu","accelerator":"test-gpu","cards":8,
               "price_cny_per_card_hour":10}]},
    {"id":"cpn:cn.nx/acme/nx-1","name":"west","area":"nx","jurisdiction":"CN-NX","pue":1.1,
     "electricity_cny_per_kwh":0.36,"carbon_kg_per_kwh":0.6,"green_share":0.5,
     "pools":[{"id":"cpn:cn.nx/acme/nx-1/gpu","accelerator":"test-gpu","cards":16,
               "price_cny_per_card_hour":5},
              {"id":"cpn:cn.nx/acme/nx-1/npu","accelerator":"test-npu","cards":8,
               "price_cny_per_card_hour":4}]},
    {"id":"cpn:sg.sg/acme/sg-1","name":"abroad","area":"sg","jurisdiction":"SG-01","pue":1.2,
     "electricity_cny_per_kwh":0.9,"carbon_kg_per_kwh":0.4,"green_share":0,
     "pools":[{"id":"cpn:sg.sg/acme/sg-1/gpu","accelerator":"test-gpu","cards":16,
               "price_cny_per_card_hour":3}]}],
   "links":[{"a":"jjj","b":"nx","rtt_ms":20,"bandwidth_gbps":10,"cny_per_gb":0.05}],
   "intra_area_link":{"rtt_ms":2,"bandwidth_gbps":100,"cny_per_gb":0},
   "default_link":{"rtt_ms":50,"bandwidth_gbps":1,"cny_per_gb":0.2}})");
  auto t = Topology::FromJson(doc, "test-topology", catalog);
  if (!t.ok()) std::abort();
  return std::move(t).value();
}

}  // namespace cpn::testing
