#include "src/core/catalog.h"

#include <gtest/gtest.h>

#include <set>

namespace cpn {
namespace {

TEST(Catalog, ShippedCatalogLoadsWithSourcesForEveryModel) {
  auto c = Catalog::LoadDefault();
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_GE(c->models().size(), 12u);
  std::set<std::string> vendors;
  for (const auto& m : c->models()) {
    vendors.insert(m.vendor);
    EXPECT_GT(m.fp16_equivalent_tflops(), 0) << m.id;
    EXPECT_FALSE(m.SourceOf("fp16_tflops").empty()) << m.id;
    EXPECT_GT(m.board_power_w, 0) << m.id;
  }
  for (const char* v : {"NVIDIA", "Huawei", "Cambricon", "Hygon", "Moore Threads", "Intel"}) {
    EXPECT_EQ(vendors.count(v), 1u) << v;
  }
  const AcceleratorModel* h20 = c->Find("nvidia-h20");
  ASSERT_NE(h20, nullptr);
  EXPECT_EQ(h20->market, "china");
  EXPECT_DOUBLE_EQ(h20->fp16_equivalent_tflops(), 148);
  // CPUs are rated by FP32 where no FP16 peak is published.
  const AcceleratorModel* xeon = c->Find("intel-xeon-8480p");
  ASSERT_NE(xeon, nullptr);
  EXPECT_FALSE(xeon->fp16_is_native());
  EXPECT_DOUBLE_EQ(xeon->fp16_equivalent_tflops(), 7.2);
  EXPECT_EQ(c->Find("no-such-chip"), nullptr);
}

TEST(Catalog, RejectsBadEntriesNamingTheField) {
  auto doc = Json::parse(R"({"version":1,"accelerators":[{"id":"x","vendor":"v","name":"n",
    "kind":"gpu","market":"global","fp16_tflops":-5,"memory_gb":1,"memory_bandwidth_gbs":1,
    "board_power_w":1,"software":[],"efficiency":{"training":0.4,"inference":0.3,"batch":0.5},
    "sources":{"*":"s"}}]})");
  auto c = Catalog::FromJson(doc, "cat");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("cat.accelerators[0].fp16_tflops"), std::string::npos)
      << c.status().message();
  doc["accelerators"][0]["fp16_tflops"] = 10;
  doc["accelerators"][0]["colour"] = "green";
  c = Catalog::FromJson(doc, "cat");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("colour: unknown field"), std::string::npos);
  doc["accelerators"][0].erase("colour");
  doc["accelerators"][0]["sources"] = Json::object();
  EXPECT_FALSE(Catalog::FromJson(doc, "cat").ok());
}

}  // namespace
}  // namespace cpn
