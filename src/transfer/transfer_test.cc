// The transfer protocol end to end on loopback: trees arrive intact, an
// interrupted transfer resumes with only what is missing, damaged chunks are
// detected and sent again, bad paths are refused.
#include "src/transfer/transfer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

namespace cpn::transfer {
namespace {

namespace fs = std::filesystem;

std::string ReadAll(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteRandom(const fs::path& p, size_t bytes, uint32_t seed) {
  fs::create_directories(p.parent_path());
  std::mt19937 rng(seed);
  std::string data(bytes, '\0');
  for (auto& c : data) c = static_cast<char>(rng());
  std::ofstream(p, std::ios::binary) << data;
}

class TransferTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("cpn-transfer-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "src");
    server_ = std::make_unique<TransferServer>((dir_ / "root").string());
    auto port = server_->Start();
    ASSERT_TRUE(port.ok()) << port.status().ToString();
    port_ = *port;
  }
  void TearDown() override {
    server_.reset();
    fs::remove_all(dir_);
  }
  static TransferOptions Small() {
    TransferOptions o;
    o.chunk_bytes = 64 * 1024;
    return o;
  }

  fs::path dir_;
  std::unique_ptr<TransferServer> server_;
  int port_ = 0;
};

TEST_F(TransferTest, ATreeArrivesIntact) {
  WriteRandom(dir_ / "src/a.bin", 1'000'000, 1);
  WriteRandom(dir_ / "src/sub/b.bin", 65'536, 2);  // exactly one chunk
  WriteRandom(dir_ / "src/sub/deeper/c.bin", 3, 3);
  std::ofstream(dir_ / "src/empty.txt").close();
  auto stats = Push("127.0.0.1", port_, (dir_ / "src").string(), "datasets/d1", Small());
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ(stats->files, 4u);
  EXPECT_EQ(stats->bytes_sent, 1'000'000u + 65'536u + 3u);
  for (const char* f : {"a.bin", "sub/b.bin", "sub/deeper/c.bin", "empty.txt"}) {
    EXPECT_EQ(ReadAll(dir_ / "root/datasets/d1" / f), ReadAll(dir_ / "src" / f)) << f;
  }
  // Again: everything is there, nothing is sent.
  auto again = Push("127.0.0.1", port_, (dir_ / "src").string(), "datasets/d1", Small());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->bytes_sent, 0u);
  EXPECT_EQ(again->chunks_skipped, 16u + 1u + 1u);
}

TEST_F(TransferTest, AnInterruptedTransferResumesWithWhatIsMissing) {
  WriteRandom(dir_ / "src/big.bin", 400 * 65'536, 4);  // 400 chunks
  TransferOptions o = Small();
  o.stop_after_chunks = 200;
  auto cut = Push("127.0.0.1", port_, (dir_ / "src/big.bin").string(), "in", o);
  ASSERT_FALSE(cut.ok());
  // Nothing half-written is visible under the final name.
  EXPECT_FALSE(fs::exists(dir_ / "root/in/big.bin"));
  // What the cut sender had handed to its sockets still arrives; a sender
  // run again later finds it there.
  while (server_->ActiveConnections() > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  auto resumed = Push("127.0.0.1", port_, (dir_ / "src/big.bin").string(), "in", Small());
  ASSERT_TRUE(resumed.ok()) << resumed.status().ToString();
  EXPECT_GE(resumed->chunks_skipped, 200u);
  // The cut run sent 200 chunks (and at most one more per stream); the two
  // together send less than 10% more than the file.
  EXPECT_LE(resumed->chunks_sent + 200, 440u);
  EXPECT_EQ(ReadAll(dir_ / "root/in/big.bin"), ReadAll(dir_ / "src/big.bin"));
}

TEST_F(TransferTest, DamagedChunksAreDetectedAndSentAgain) {
  WriteRandom(dir_ / "src/x.bin", 50 * 65'536, 5);
  server_->CorruptNextChunks(3);
  auto stats = Push("127.0.0.1", port_, (dir_ / "src/x.bin").string(), "x", Small());
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ(stats->chunks_resent, 3u);
  EXPECT_EQ(ReadAll(dir_ / "root/x/x.bin"), ReadAll(dir_ / "src/x.bin"));

  // A byte flipped in the file at the destination: found and repaired by
  // sending that one chunk.
  {
    std::fstream f(dir_ / "root/x/x.bin", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(10 * 65'536 + 7);
    f.put('\x42' ^ ReadAll(dir_ / "src/x.bin")[10 * 65'536 + 7]);
  }
  auto repaired = Push("127.0.0.1", port_, (dir_ / "src/x.bin").string(), "x", Small());
  ASSERT_TRUE(repaired.ok()) << repaired.status().ToString();
  EXPECT_EQ(repaired->chunks_sent, 1u);
  EXPECT_EQ(ReadAll(dir_ / "root/x/x.bin"), ReadAll(dir_ / "src/x.bin"));
}

TEST_F(TransferTest, TenThousandSmallFiles) {
  for (int i = 0; i < 10'000; ++i) {
    fs::path p = dir_ / "src" / ("d" + std::to_string(i % 50)) / ("f" + std::to_string(i));
    if (i < 50) fs::create_directories(p.parent_path());
    std::ofstream(p) << "file " << i << "\n";
  }
  auto stats = Push("127.0.0.1", port_, (dir_ / "src").string(), "many", Small());
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ(stats->files, 10'000u);
  for (int i = 0; i < 10'000; i += 997) {
    fs::path rel = fs::path("d" + std::to_string(i % 50)) / ("f" + std::to_string(i));
    EXPECT_EQ(ReadAll(dir_ / "root/many" / rel), "file " + std::to_string(i) + "\n");
  }
  size_t count = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir_ / "root/many")) {
    if (e.is_regular_file()) ++count;
  }
  EXPECT_EQ(count, 10'000u);  // no part files left behind
}

TEST_F(TransferTest, BadInputIsRefusedWithTheReason) {
  auto missing = Push("127.0.0.1", port_, (dir_ / "src/nope").string(), "x", Small());
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("does not exist"), std::string::npos);
  WriteRandom(dir_ / "src/f.bin", 10, 6);
  for (const char* dest : {"../escape", "/abs", "a/../../b", "", "a//b"}) {
    auto r = Push("127.0.0.1", port_, (dir_ / "src/f.bin").string(), dest, Small());
    ASSERT_FALSE(r.ok()) << dest;
    EXPECT_NE(r.status().message().find("refused"), std::string::npos) << r.status().ToString();
  }
  EXPECT_FALSE(fs::exists(dir_ / "escape"));
  fs::create_symlink(dir_ / "src/f.bin", dir_ / "src/link");
  auto link = Push("127.0.0.1", port_, (dir_ / "src").string(), "x", Small());
  ASSERT_FALSE(link.ok());
  EXPECT_NE(link.status().message().find("symbolic link"), std::string::npos);
  auto nobody = Push("127.0.0.1", 1, (dir_ / "src/f.bin").string(), "x", Small());
  ASSERT_FALSE(nobody.ok());
  EXPECT_NE(nobody.status().message().find("cannot connect"), std::string::npos);
}

TEST_F(TransferTest, CompressionRateLimitAndCongestionControl) {
  // Compressible: a repeated line.
  fs::create_directories(dir_ / "src");
  {
    std::ofstream out(dir_ / "src/log.txt");
    for (int i = 0; i < 40'000; ++i) out << "2026-11-27 step " << (i % 100) << " loss 0.125\n";
  }
  TransferOptions o = Small();
  o.compress = true;
  o.rate_limit_mbps = 40;  // ~1.1 MB takes at least ~0.2 s
  auto stats = Push("127.0.0.1", port_, (dir_ / "src/log.txt").string(), "c", o);
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ(ReadAll(dir_ / "root/c/log.txt"), ReadAll(dir_ / "src/log.txt"));
  EXPECT_LT(stats->bytes_on_wire * 5, stats->bytes_sent);  // zstd shrinks it over 5x
  EXPECT_GE(stats->data_seconds,
            static_cast<double>(stats->bytes_on_wire) * 8 / 40e6 * 0.8);  // paced
  EXPECT_GE(stats->streams, 2);  // chosen from the round trip
  std::ifstream avail("/proc/sys/net/ipv4/tcp_available_congestion_control");
  std::string all((std::istreambuf_iterator<char>(avail)), std::istreambuf_iterator<char>());
  if (all.find("bbr") != std::string::npos) {
    EXPECT_EQ(stats->congestion, "bbr");
  }
}

// Pull: the service serves its data root; the puller checks, resumes and
// renames exactly as a receiver does.
TEST_F(TransferTest, PullBringsATreeBackAndResumes) {
  WriteRandom(dir_ / "root/ds/a.bin", 1'000'000, 11);
  WriteRandom(dir_ / "root/ds/sub/b.bin", 70'000, 12);
  std::ofstream(dir_ / "root/ds/empty.txt").close();
  auto stats = Pull("127.0.0.1", port_, "ds", (dir_ / "local").string(), Small());
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ(stats->files, 3u);
  EXPECT_EQ(stats->bytes_sent, 1'000'000u + 70'000u);
  for (const char* f : {"a.bin", "sub/b.bin", "empty.txt"}) {
    ASSERT_TRUE(fs::exists(dir_ / "local" / f)) << f;
    EXPECT_EQ(ReadAll(dir_ / "local" / f), ReadAll(dir_ / "root/ds" / f)) << f;
  }
  // Again: nothing moves.
  auto again = Pull("127.0.0.1", port_, "ds", (dir_ / "local").string(), Small());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->bytes_sent, 0u);
  EXPECT_EQ(again->chunks_skipped, 16u + 2u);
  // Cut after 6 chunks: nothing half-written is visible, and the re-run
  // fetches only the rest.
  TransferOptions o = Small();
  o.stop_after_chunks = 6;
  o.streams = 2;
  auto cut = Pull("127.0.0.1", port_, "ds", (dir_ / "other").string(), o);
  ASSERT_FALSE(cut.ok());
  EXPECT_FALSE(fs::exists(dir_ / "other/a.bin"));
  o.stop_after_chunks = 0;
  auto resumed = Pull("127.0.0.1", port_, "ds", (dir_ / "other").string(), o);
  ASSERT_TRUE(resumed.ok()) << resumed.status().ToString();
  EXPECT_GE(resumed->chunks_skipped, 6u);
  EXPECT_EQ(ReadAll(dir_ / "other/a.bin"), ReadAll(dir_ / "root/ds/a.bin"));
  // A single file lands in the directory under its name.
  auto one = Pull("127.0.0.1", port_, "ds/sub/b.bin", (dir_ / "single").string(), Small());
  ASSERT_TRUE(one.ok()) << one.status().ToString();
  EXPECT_EQ(ReadAll(dir_ / "single/b.bin"), ReadAll(dir_ / "root/ds/sub/b.bin"));
}

TEST_F(TransferTest, PullRepairsALocalCopyAndRefusesBadPaths) {
  WriteRandom(dir_ / "root/ds/a.bin", 500'000, 13);
  ASSERT_TRUE(Pull("127.0.0.1", port_, "ds", (dir_ / "local").string(), Small()).ok());
  {
    std::fstream f(dir_ / "local/a.bin", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(200'000);
    f.put('\x42' ^ ReadAll(dir_ / "local/a.bin")[200'000]);
  }
  auto repaired = Pull("127.0.0.1", port_, "ds", (dir_ / "local").string(), Small());
  ASSERT_TRUE(repaired.ok()) << repaired.status().ToString();
  EXPECT_EQ(repaired->bytes_sent, 65'536u);  // the one damaged chunk
  EXPECT_EQ(ReadAll(dir_ / "local/a.bin"), ReadAll(dir_ / "root/ds/a.bin"));

  fs::create_directories(dir_ / "outside");
  WriteRandom(dir_ / "outside/secret.bin", 100, 14);
  fs::create_symlink(dir_ / "outside", dir_ / "root/escape");
  for (const auto& [path, words] : std::vector<std::pair<std::string, std::string>>{
           {"../outside", ".."},
           {"/etc", "relative"},
           {"missing", "does not exist"},
           {"escape/secret.bin", "outside the site's data root"},
           {"", "empty"}}) {
    auto r = Pull("127.0.0.1", port_, path, (dir_ / "bad").string(), Small());
    ASSERT_FALSE(r.ok()) << path;
    EXPECT_NE(r.status().message().find("refused"), std::string::npos) << r.status().ToString();
    EXPECT_NE(r.status().message().find(words), std::string::npos) << r.status().ToString();
  }
  EXPECT_FALSE(fs::exists(dir_ / "bad/secret.bin"));
}

// Site to site: the first service pushes straight to the second.
TEST_F(TransferTest, RelayMovesDataBetweenTwoServicesAndResumes) {
  TransferServer west((dir_ / "west").string());
  auto west_port = west.Start();
  ASSERT_TRUE(west_port.ok());
  WriteRandom(dir_ / "root/ds/a.bin", 800'000, 15);
  WriteRandom(dir_ / "root/ds/b/c.bin", 10, 16);
  uint64_t last_progress = 0;
  TransferOptions o = Small();
  o.progress = [&](uint64_t sent, uint64_t) { last_progress = sent; };
  auto stats = Relay({"127.0.0.1", port_}, "ds", {"127.0.0.1", *west_port}, "copies/ds", o);
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ(stats->files, 2u);
  EXPECT_EQ(stats->bytes_sent, 800'010u);
  EXPECT_EQ(last_progress, 800'010u);
  EXPECT_EQ(ReadAll(dir_ / "west/copies/ds/a.bin"), ReadAll(dir_ / "root/ds/a.bin"));
  EXPECT_EQ(ReadAll(dir_ / "west/copies/ds/b/c.bin"), ReadAll(dir_ / "root/ds/b/c.bin"));
  auto again = Relay({"127.0.0.1", port_}, "ds", {"127.0.0.1", *west_port}, "copies/ds", Small());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->bytes_sent, 0u);
  // Cut short: it fails saying so, and nothing half-written is visible.
  TransferOptions cut = Small();
  cut.stop_after_chunks = 4;
  auto first = Relay({"127.0.0.1", port_}, "ds", {"127.0.0.1", *west_port}, "other", cut);
  ASSERT_FALSE(first.ok());
  EXPECT_NE(first.status().message().find("stopped"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir_ / "west/other/a.bin"));
  // Part of the tree already there (one file relayed on its own): a relay
  // of the whole tree moves only the rest, and what the cut left is reused.
  auto part =
      Relay({"127.0.0.1", port_}, "ds/a.bin", {"127.0.0.1", *west_port}, "partial", Small());
  ASSERT_TRUE(part.ok()) << part.status().ToString();
  auto rest = Relay({"127.0.0.1", port_}, "ds", {"127.0.0.1", *west_port}, "partial", Small());
  ASSERT_TRUE(rest.ok()) << rest.status().ToString();
  EXPECT_EQ(rest->chunks_skipped, 13u);  // a.bin, whole
  EXPECT_EQ(rest->bytes_sent, 10u);      // b/c.bin
  EXPECT_EQ(ReadAll(dir_ / "west/partial/b/c.bin"), ReadAll(dir_ / "root/ds/b/c.bin"));
  auto resumed = Relay({"127.0.0.1", port_}, "ds", {"127.0.0.1", *west_port}, "other", Small());
  ASSERT_TRUE(resumed.ok()) << resumed.status().ToString();
  EXPECT_EQ(ReadAll(dir_ / "west/other/a.bin"), ReadAll(dir_ / "root/ds/a.bin"));
  // A source path that is not there, and a destination that leaves the
  // other root, are refused with the reason.
  auto missing = Relay({"127.0.0.1", port_}, "nope", {"127.0.0.1", *west_port}, "x", Small());
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("does not exist"), std::string::npos);
  auto escape = Relay({"127.0.0.1", port_}, "ds", {"127.0.0.1", *west_port}, "../x", Small());
  ASSERT_FALSE(escape.ok());
  EXPECT_NE(escape.status().message().find(".."), std::string::npos) << escape.status().ToString();
}

// Regression: the data root's check was a plain string prefix, so a link
// inside "root" to a sibling "root2" passed it ("…/root2" starts with
// "…/root"). Writing or reading through it is refused.
TEST_F(TransferTest, ALinkToASiblingOfTheRootWithTheSamePrefixIsRefused) {
  fs::create_directories(dir_ / "root2");
  WriteRandom(dir_ / "root2/secret.bin", 100, 21);
  fs::create_symlink(dir_ / "root2", dir_ / "root/sneak");
  WriteRandom(dir_ / "src/in.bin", 100, 22);
  auto pushed = Push("127.0.0.1", port_, (dir_ / "src/in.bin").string(), "sneak/x", Small());
  ASSERT_FALSE(pushed.ok());
  EXPECT_NE(pushed.status().message().find("resolves outside the site's data root"),
            std::string::npos)
      << pushed.status().ToString();
  EXPECT_FALSE(fs::exists(dir_ / "root2/x/in.bin"));
  auto pulled = Pull("127.0.0.1", port_, "sneak/secret.bin", (dir_ / "out").string(), Small());
  ASSERT_FALSE(pulled.ok());
  EXPECT_NE(pulled.status().message().find("resolves outside the site's data root"),
            std::string::npos)
      << pulled.status().ToString();
}

TEST(TransferTlsTest, AllOverTlsWithTheReceiversCertificateChecked) {
  fs::path dir = fs::path(::testing::TempDir()) / ("cpn-transfer-tls-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "src");
  const std::string cert = (dir / "cert.pem").string(), key = (dir / "key.pem").string();
  ASSERT_EQ(std::system(("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
                         "-addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout " +
                         key + " -out " + cert + " >/dev/null 2>&1")
                            .c_str()),
            0);
  WriteRandom(dir / "src/w.bin", 3 * 65'536 + 17, 9);
  TransferServer server((dir / "root").string(), "127.0.0.1", 0, {cert, key, cert});
  auto port = server.Start();
  ASSERT_TRUE(port.ok()) << port.status().ToString();
  TransferOptions o;
  o.chunk_bytes = 65'536;
  o.tls = true;
  o.tls_ca_file = cert;
  auto stats = Push("127.0.0.1", *port, (dir / "src/w.bin").string(), "t", o);
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ(ReadAll(dir / "root/t/w.bin"), ReadAll(dir / "src/w.bin"));
  // Pull and relay over TLS too: the puller checks the certificate; the
  // relaying service checks the other's with its own CA (relay_ca_file).
  auto pulled = Pull("127.0.0.1", *port, "t", (dir / "pulled").string(), o);
  ASSERT_TRUE(pulled.ok()) << pulled.status().ToString();
  EXPECT_EQ(ReadAll(dir / "pulled/w.bin"), ReadAll(dir / "src/w.bin"));
  TransferServer other((dir / "other").string(), "127.0.0.1", 0, {cert, key, ""});
  auto other_port = other.Start();
  ASSERT_TRUE(other_port.ok());
  auto relayed = Relay({"127.0.0.1", *port, true}, "t", {"127.0.0.1", *other_port, true}, "r", o);
  ASSERT_TRUE(relayed.ok()) << relayed.status().ToString();
  EXPECT_EQ(ReadAll(dir / "other/r/w.bin"), ReadAll(dir / "src/w.bin"));
  auto plain_hop =
      Relay({"127.0.0.1", *port, true}, "t", {"127.0.0.1", *other_port, false}, "q", o);
  EXPECT_FALSE(plain_hop.ok());
  EXPECT_FALSE(fs::exists(dir / "other/q/w.bin"));
  // Not trusted: the system's CAs do not know this certificate.
  o.tls_ca_file.clear();
  auto untrusted = Push("127.0.0.1", *port, (dir / "src/w.bin").string(), "u", o);
  ASSERT_FALSE(untrusted.ok());
  EXPECT_NE(untrusted.status().message().find("certificate"), std::string::npos)
      << untrusted.status().ToString();
  // Plain TCP to a TLS receiver fails cleanly.
  TransferOptions plain;
  plain.chunk_bytes = 65'536;
  auto refused = Push("127.0.0.1", *port, (dir / "src/w.bin").string(), "p", plain);
  EXPECT_FALSE(refused.ok());
  EXPECT_FALSE(fs::exists(dir / "root/p/w.bin"));
  // A bad key is refused at start, with the file named.
  TransferServer bad((dir / "root2").string(), "127.0.0.1", 0, {cert, cert, ""});
  auto bad_start = bad.Start();
  ASSERT_FALSE(bad_start.ok());
  EXPECT_NE(bad_start.status().message().find("cannot load key"), std::string::npos);
  server.Stop();
  fs::remove_all(dir);
}

TEST(ResolveUnderTest, StaysInsideTheRoot) {
  EXPECT_EQ(*ResolveUnder("/data", "a/b.txt"), "/data/a/b.txt");
  for (const char* bad : {"..", "../x", "a/..", "/etc/passwd", "a/./b", "", "a/"}) {
    EXPECT_FALSE(ResolveUnder("/data", bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace cpn::transfer
