// HttpClient against HttpServer: kept-alive connections, and a kept
// connection the server dropped is replaced without the caller noticing.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "src/net/http_client.h"
#include "src/net/http_server.h"

namespace cpn::net {
namespace {

HttpServerOptions Options(uint16_t port) {
  HttpServerOptions o;
  o.port = port;
  o.threads = 2;
  return o;
}

HttpResponse EchoPeer(const HttpRequest& r) {
  HttpResponse out;
  out.body = r.peer;  // the client's address and port: one per connection
  return out;
}

TEST(HttpClientTest, KeepsItsConnectionAcrossRequests) {
  HttpServer server(Options(0), EchoPeer);
  auto port = server.Start();
  ASSERT_TRUE(port.ok());
  auto client = HttpClient::Create("http://127.0.0.1:" + std::to_string(*port));
  ASSERT_TRUE(client.ok());
  std::set<std::string> peers;
  for (int i = 0; i < 5; ++i) {
    auto r = client->Send("GET", "/x");
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->status, 200);
    peers.insert(r->body);
  }
  EXPECT_EQ(peers.size(), 1u);  // five requests, one connection
  // A copy opens its own connection.
  HttpClient copy = *client;
  auto r = copy.Send("GET", "/x");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(peers.count(r->body), 0u);
}

TEST(HttpClientTest, AConnectionTheServerDroppedIsReplaced) {
  auto first = std::make_unique<HttpServer>(Options(0), EchoPeer);
  auto port = first->Start();
  ASSERT_TRUE(port.ok());
  auto client = HttpClient::Create("http://127.0.0.1:" + std::to_string(*port));
  ASSERT_TRUE(client.ok());
  auto before = client->Send("GET", "/x");
  ASSERT_TRUE(before.ok());
  first.reset();  // the server goes away with the kept connection
  HttpServer second(Options(*port), EchoPeer);
  ASSERT_TRUE(second.Start().ok());
  // GET: replaced and retried on a new connection.
  auto after = client->Send("GET", "/x");
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_EQ(after->status, 200);
  EXPECT_NE(after->body, before->body);
  // With nothing listening, the error names the server.
  auto client2 = HttpClient::Create("http://127.0.0.1:1");
  auto refused = client2->Send("GET", "/x");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("127.0.0.1:1"), std::string::npos);
}

}  // namespace
}  // namespace cpn::net
