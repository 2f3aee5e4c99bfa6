#include "src/core/toml.h"

#include <gtest/gtest.h>

namespace cpn {
namespace {

TEST(Toml, ParsesTheSubsetWithLineNumbers) {
  auto doc = ParseToml(R"(# a site
server = "http://127.0.0.1:8080"
heartbeat_s = 2

[site]
id = "cpn:cn.nx/zwcloud/zw-01"   # trailing comment
pue = 1.1
green = true
tags = ["a", 'b', "c\"d"]

[[pools]]
name = "ascend-910b"
cards = 1_024

[[pools]]
name = "h20"
cards = 256
)",
                       "site.toml");
  ASSERT_TRUE(doc.ok()) << doc.status().ToString();
  EXPECT_EQ(doc->root["server"], "http://127.0.0.1:8080");
  EXPECT_EQ(doc->root["site"]["pue"], 1.1);
  EXPECT_EQ(doc->root["site"]["green"], true);
  EXPECT_EQ(doc->root["site"]["tags"][2], "c\"d");
  EXPECT_EQ(doc->root["pools"][0]["cards"], 1024);
  EXPECT_EQ(doc->root["pools"][1]["name"], "h20");
  EXPECT_EQ(doc->lines.at("site.pue"), 7);
  EXPECT_EQ(doc->lines.at("pools[1].cards"), 17);
  Status located = doc->Locate(InvalidArgument("pools[1].cards: too many"), "site.toml");
  EXPECT_EQ(located.message(), "site.toml:17: pools[1].cards: too many");
}

TEST(Toml, RejectsWhatItDoesNotUnderstandWithTheLine) {
  struct Case {
    const char* text;
    const char* expect;
  };
  for (const auto& c : std::vector<Case>{{"a = 1\nb = \"open\n", "f.toml:2: unterminated string"},
                                         {"a = 1\na = 2\n", "f.toml:2: key 'a' defined twice"},
                                         {"[s]\n[s]\n", "f.toml:2: table 's' defined twice"},
                                         {"x y = 1\n", "f.toml:1: expected '='"},
                                         {"a = 1 2\n", "f.toml:1: unexpected text"},
                                         {"a = [1, 2\n", "f.toml:1: unterminated array"},
                                         {"a = 12abc\n", "f.toml:1: unexpected text"},
                                         {"[a.b]\n", "f.toml:1: table name 'a.b' must be"}}) {
    auto doc = ParseToml(c.text, "f.toml");
    ASSERT_FALSE(doc.ok()) << c.text;
    EXPECT_NE(doc.status().message().find(c.expect), std::string::npos) << doc.status().message();
  }
}

// Regression (fuzzing the agent's config): deep nesting overflowed the stack.
TEST(Toml, DeeplyNestedArraysAreRefusedNotRecursedInto) {
  auto deep = ParseToml("a = " + std::string(100000, '[') + "\n", "f.toml");
  ASSERT_FALSE(deep.ok());
  EXPECT_NE(deep.status().message().find("f.toml:1: arrays nested more than 32 deep"),
            std::string::npos)
      << deep.status().message();
  auto fine = ParseToml("a = " + std::string(32, '[') + std::string(32, ']') + "\n", "f.toml");
  EXPECT_TRUE(fine.ok()) << fine.status().message();
}

}  // namespace
}  // namespace cpn
