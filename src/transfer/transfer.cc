#include "src/transfer/transfer.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <thread>

namespace cpn::transfer {

namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {

constexpr char kControlMagic[] = "CPNT1\n";
constexpr char kDataMagic[] = "CPND1\n";
constexpr char kPullDataMagic[] = "CPNR1\n";  // a data connection that fetches chunks
constexpr uint32_t kEndOfData = 0xFFFFFFFFu;
constexpr uint32_t kFlagZstd = 1;                  // frame flag: payload is one zstd frame
constexpr uint32_t kMaxMessageBytes = 256u << 20;  // a manifest of ~1M chunks

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

// sendfile() and TLS writes to a peer that has gone raise SIGPIPE, which
// would end the process; a transfer wants EPIPE, an error it can report.
void IgnoreSigpipe() {
  static std::once_flag once;
  std::call_once(once, [] { ::signal(SIGPIPE, SIG_IGN); });
}

// A socket closed on destruction.
std::string TlsError() {
  unsigned long e = ERR_get_error();
  if (e == 0) return "no detail";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

// A connection, plain or TLS (after Handshake). Closed on destruction.
class Socket {
 public:
  Socket() = default;
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket() {
    if (ssl_ != nullptr) SSL_free(ssl_);
    if (fd_ >= 0) ::close(fd_);
  }
  Socket(Socket&& o) noexcept
      : fd_(std::exchange(o.fd_, -1)), ssl_(std::exchange(o.ssl_, nullptr)) {}
  Socket& operator=(Socket&& o) noexcept {
    std::swap(fd_, o.fd_);
    std::swap(ssl_, o.ssl_);
    return *this;
  }
  int fd() const { return fd_; }
  bool tls() const { return ssl_ != nullptr; }

  // TLS over this connection: as the client (verifying `host`, a name or
  // an address) or as the server.
  Status Handshake(SSL_CTX* ctx, bool client, const std::string& host) {
    ssl_ = SSL_new(ctx);
    if (ssl_ == nullptr || SSL_set_fd(ssl_, fd_) != 1) return Internal("TLS: " + TlsError());
    int rc;
    if (client) {
      in_addr4_or_6 addr;
      X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
      if (inet_pton(AF_INET, host.c_str(), &addr) == 1 ||
          inet_pton(AF_INET6, host.c_str(), &addr) == 1) {
        X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str());
      } else {
        SSL_set_tlsext_host_name(ssl_, host.c_str());
        X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0);
      }
      rc = SSL_connect(ssl_);
    } else {
      rc = SSL_accept(ssl_);
    }
    if (rc != 1) {
      long verify = SSL_get_verify_result(ssl_);
      std::string why = client && verify != X509_V_OK ? std::string("certificate not trusted: ") +
                                                            X509_verify_cert_error_string(verify)
                                                      : TlsError();
      return Unavailable("TLS handshake with " + (client ? host : std::string("sender")) +
                         " failed: " + why);
    }
    return Status::Ok();
  }

  Status SendAll(const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      if (ssl_ != nullptr) {
        int w = SSL_write(ssl_, p, static_cast<int>(std::min<size_t>(n, 1 << 30)));
        if (w <= 0) return Unavailable("transfer connection lost while sending (TLS)");
        p += w;
        n -= static_cast<size_t>(w);
        continue;
      }
      ssize_t w = ::send(fd_, p, n, MSG_NOSIGNAL);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return Unavailable(Errno("transfer connection lost while sending"));
      p += w;
      n -= static_cast<size_t>(w);
    }
    return Status::Ok();
  }
  Status RecvAll(void* data, size_t n) {
    char* p = static_cast<char*>(data);
    while (n > 0) {
      if (ssl_ != nullptr) {
        int r = SSL_read(ssl_, p, static_cast<int>(std::min<size_t>(n, 1 << 30)));
        if (r <= 0) return Unavailable("transfer connection closed or lost (TLS)");
        p += r;
        n -= static_cast<size_t>(r);
        continue;
      }
      ssize_t r = ::recv(fd_, p, n, 0);
      if (r < 0 && errno == EINTR) continue;
      if (r == 0) return Unavailable("transfer connection closed by the peer");
      if (r < 0) return Unavailable(Errno("transfer connection lost while receiving"));
      p += r;
      n -= static_cast<size_t>(r);
    }
    return Status::Ok();
  }
  Status SendU32(uint32_t v) {
    uint32_t le = htole32(v);
    return SendAll(&le, 4);
  }
  Result<uint32_t> RecvU32() {
    uint32_t le = 0;
    if (Status s = RecvAll(&le, 4); !s.ok()) return s;
    return le32toh(le);
  }
  Status SendMessage(const Json& j) {
    // Length and body in one write: two small writes would meet Nagle and
    // delayed ACKs (40 ms per message).
    std::string body = j.dump();
    uint32_t le = htole32(static_cast<uint32_t>(body.size()));
    body.insert(0, reinterpret_cast<const char*>(&le), 4);
    return SendAll(body.data(), body.size());
  }
  Result<Json> RecvMessage() {
    auto n = RecvU32();
    if (!n.ok()) return n.status();
    if (*n > kMaxMessageBytes) return InvalidArgument("transfer message too large");
    std::string body(*n, '\0');
    if (Status s = RecvAll(body.data(), body.size()); !s.ok()) return s;
    Json j = Json::parse(body, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return InvalidArgument("transfer message is not JSON");
    return j;
  }

 private:
  // Room for either address family, for inet_pton's check.
  struct in_addr4_or_6 {
    unsigned char bytes[16];
  };
  int fd_ = -1;
  SSL* ssl_ = nullptr;
};

using SslCtx = std::unique_ptr<SSL_CTX, void (*)(SSL_CTX*)>;

Result<SslCtx> ClientContext(const std::string& ca_file) {
  SslCtx ctx(SSL_CTX_new(TLS_client_method()), SSL_CTX_free);
  if (!ctx) return Internal("TLS: " + TlsError());
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  int ok = ca_file.empty() ? SSL_CTX_set_default_verify_paths(ctx.get())
                           : SSL_CTX_load_verify_locations(ctx.get(), ca_file.c_str(), nullptr);
  if (ok != 1)
    return InvalidArgument("TLS: cannot load CA certificates " + ca_file + ": " + TlsError());
  return ctx;
}

// The largest send buffer TCP autotuning gives one socket.
uint64_t MaxSendBuffer() {
  std::ifstream in("/proc/sys/net/ipv4/tcp_wmem");
  uint64_t min = 0, def = 0, max = 0;
  if (in >> min >> def >> max && max > 0) return max;
  return 4ull << 20;
}

Result<Socket> ConnectTcp(const std::string& host, int port);

Result<Socket> Connect(const std::string& host, int port, SSL_CTX* tls) {
  auto s = ConnectTcp(host, port);
  if (!s.ok() || tls == nullptr) return s;
  CPN_RETURN_IF_ERROR(s->Handshake(tls, true, host));
  return s;
}

Result<Socket> ConnectTcp(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
  if (rc != 0) return Unavailable("cannot resolve " + host + ": " + gai_strerror(rc));
  std::string last = "no address";
  for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
    Socket s(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol));
    if (s.fd() < 0) continue;
    if (::connect(s.fd(), a->ai_addr, a->ai_addrlen) == 0) {
      int one = 1;
      ::setsockopt(s.fd(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      ::freeaddrinfo(res);
      return s;
    }
    last = std::strerror(errno);
  }
  ::freeaddrinfo(res);
  return Unavailable("cannot connect to transfer service at " + host + ":" + std::to_string(port) +
                     ": " + last);
}

bool SafeComponent(const std::string& c) {
  return !c.empty() && c != "." && c != ".." && c.find('\0') == std::string::npos;
}

std::string HexOf(XXH128_hash_t h) {
  char buf[33];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(h.high64),
                static_cast<unsigned long long>(h.low64));
  return buf;
}

uint64_t ChunkCount(uint64_t size, uint64_t chunk) {
  return size == 0 ? 0 : (size + chunk - 1) / chunk;
}

uint64_t ChunkLength(uint64_t size, uint64_t chunk, uint64_t index) {
  return std::min(chunk, size - index * chunk);
}

Status ReadAt(int fd, char* buf, uint64_t n, uint64_t offset, const std::string& path) {
  while (n > 0) {
    ssize_t r = ::pread(fd, buf, n, static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return Internal(Errno("cannot read " + path));
    buf += r;
    n -= static_cast<uint64_t>(r);
    offset += static_cast<uint64_t>(r);
  }
  return Status::Ok();
}

Status WriteAt(int fd, const char* buf, uint64_t n, uint64_t offset, const std::string& path) {
  while (n > 0) {
    ssize_t w = ::pwrite(fd, buf, n, static_cast<off_t>(offset));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return ResourceExhausted(Errno("cannot write " + path));
    buf += w;
    n -= static_cast<uint64_t>(w);
    offset += static_cast<uint64_t>(w);
  }
  return Status::Ok();
}

// Chunk checksums and whole-file digest of an open file.
Status HashFile(int fd, uint64_t size, uint64_t chunk_bytes, const std::string& path,
                std::vector<std::string>* chunks, std::string* digest) {
  std::vector<char> buf(chunk_bytes);
  XXH3_state_t* whole = XXH3_createState();
  XXH3_128bits_reset(whole);
  chunks->clear();
  for (uint64_t i = 0; i < ChunkCount(size, chunk_bytes); ++i) {
    uint64_t n = ChunkLength(size, chunk_bytes, i);
    if (Status s = ReadAt(fd, buf.data(), n, i * chunk_bytes, path); !s.ok()) {
      XXH3_freeState(whole);
      return s;
    }
    chunks->push_back(Hash128(buf.data(), n));
    XXH3_128bits_update(whole, buf.data(), n);
  }
  *digest = HexOf(XXH3_128bits_digest(whole));
  XXH3_freeState(whole);
  return Status::Ok();
}

Json ManifestToJson(const Manifest& m) {
  Json files = Json::array();
  for (const auto& f : m.files) {
    files.push_back(
        {{"path", f.path}, {"size", f.size}, {"chunks", f.chunks}, {"digest", f.digest}});
  }
  return {{"chunk_bytes", m.chunk_bytes}, {"files", files}};
}

Result<Manifest> ManifestFromJson(const Json& j) {
  Manifest m;
  if (!j.contains("chunk_bytes") || !j["chunk_bytes"].is_number_unsigned() ||
      !j.contains("files") || !j["files"].is_array()) {
    return InvalidArgument("manifest: expected chunk_bytes and files");
  }
  m.chunk_bytes = j["chunk_bytes"].get<uint64_t>();
  if (m.chunk_bytes < 4096 || m.chunk_bytes > (256ull << 20)) {
    return InvalidArgument("manifest: chunk_bytes must be between 4 KiB and 256 MiB");
  }
  for (const auto& f : j["files"]) {
    FileEntry e;
    if (!f.is_object() || !f.contains("path") || !f["path"].is_string() || !f.contains("size") ||
        !f["size"].is_number_unsigned() || !f.contains("chunks") || !f["chunks"].is_array() ||
        !f.contains("digest") || !f["digest"].is_string()) {
      return InvalidArgument("manifest: each file needs path, size, chunks and digest");
    }
    e.path = f["path"].get<std::string>();
    e.size = f["size"].get<uint64_t>();
    e.digest = f["digest"].get<std::string>();
    for (const auto& c : f["chunks"]) {
      if (!c.is_string() || c.get<std::string>().size() != 32) {
        return InvalidArgument("manifest: chunk checksums are 32 hex digits");
      }
      e.chunks.push_back(c.get<std::string>());
    }
    if (e.chunks.size() != ChunkCount(e.size, m.chunk_bytes)) {
      return InvalidArgument("manifest: " + e.path + " has the wrong number of chunks");
    }
    m.files.push_back(std::move(e));
  }
  std::set<std::string> paths;
  for (const auto& f : m.files) {
    if (!paths.insert(f.path).second) {
      return InvalidArgument("manifest: " + f.path + " is listed twice");
    }
  }
  return m;
}

}  // namespace

uint64_t Manifest::TotalBytes() const {
  uint64_t n = 0;
  for (const auto& f : files) n += f.size;
  return n;
}

std::string Hash128(const void* data, size_t size) { return HexOf(XXH3_128bits(data, size)); }

Result<std::string> ResolveUnder(const std::string& root, const std::string& relative) {
  if (relative.empty()) return InvalidArgument("path is empty");
  if (relative.front() == '/') {
    return InvalidArgument("path '" + relative + "' must be relative to the site's data root");
  }
  std::string out = root;
  size_t start = 0;
  while (start <= relative.size()) {
    size_t end = relative.find('/', start);
    if (end == std::string::npos) end = relative.size();
    std::string c = relative.substr(start, end - start);
    if (!SafeComponent(c)) {
      return InvalidArgument("path '" + relative +
                             "' leaves the site's data root or has an empty, '.' or '..' part");
    }
    out += "/" + c;
    start = end + 1;
  }
  return out;
}

Result<Manifest> BuildManifest(const std::string& source, uint64_t chunk_bytes) {
  std::error_code ec;
  auto st = fs::symlink_status(source, ec);
  if (ec || !fs::exists(st)) return NotFound("source " + source + " does not exist");
  if (fs::is_symlink(st)) return InvalidArgument("source " + source + " is a symbolic link");
  std::vector<std::pair<std::string, std::string>> files;  // (absolute, relative)
  if (fs::is_regular_file(st)) {
    files.emplace_back(source, fs::path(source).filename().string());
  } else if (fs::is_directory(st)) {
    fs::recursive_directory_iterator it(source, fs::directory_options::none, ec);
    if (ec) return FailedPrecondition("cannot read " + source + ": " + ec.message());
    for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (ec) return FailedPrecondition("cannot read " + source + ": " + ec.message());
      auto s = it->symlink_status();
      if (fs::is_symlink(s)) {
        return InvalidArgument("source contains a symbolic link: " + it->path().string());
      }
      if (fs::is_regular_file(s)) {
        files.emplace_back(it->path().string(), fs::relative(it->path(), source).generic_string());
      }
    }
    std::sort(files.begin(), files.end(),
              [](const auto& a, const auto& b) { return a.second < b.second; });
  } else {
    return InvalidArgument("source " + source + " is neither a file nor a directory");
  }
  Manifest m;
  m.chunk_bytes = chunk_bytes;
  for (const auto& [abs, rel] : files) {
    int fd = ::open(abs.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return FailedPrecondition(Errno("cannot open " + abs));
    struct stat sb {};
    ::fstat(fd, &sb);
    FileEntry e;
    e.path = rel;
    e.size = static_cast<uint64_t>(sb.st_size);
    Status s = HashFile(fd, e.size, chunk_bytes, abs, &e.chunks, &e.digest);
    ::close(fd);
    if (!s.ok()) return s;
    m.files.push_back(std::move(e));
  }
  return m;
}

// ------------------------------------------------------- sending chunks

namespace {

// Paces the sending threads together to a byte rate.
class Pacer {
 public:
  explicit Pacer(double mbps) : bytes_per_s_(mbps * 1e6 / 8) {}
  void Take(uint64_t bytes) {
    if (bytes_per_s_ <= 0) return;
    std::chrono::steady_clock::time_point until;
    {
      std::lock_guard lock(mu_);
      auto now = std::chrono::steady_clock::now();
      if (next_ < now) next_ = now;
      until = next_;
      next_ += std::chrono::duration_cast<std::chrono::steady_clock::duration>(
          std::chrono::duration<double>(static_cast<double>(bytes) / bytes_per_s_));
    }
    std::this_thread::sleep_until(until);
  }

 private:
  double bytes_per_s_;
  std::mutex mu_;
  std::chrono::steady_clock::time_point next_{};
};

bool SetCongestion(int fd, const std::string& name) {
  if (name.empty()) return true;
  return ::setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name.data(),
                      static_cast<socklen_t>(name.size())) == 0;
}

std::string CongestionOf(int fd) {
  char buf[32] = {};
  socklen_t len = sizeof buf;
  if (::getsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, buf, &len) != 0) return "";
  return std::string(buf, strnlen(buf, len));
}

// Where each manifest file of `source` is on this machine.
std::vector<std::string> LocalPaths(const std::string& source, const Manifest& m) {
  std::vector<std::string> local(m.files.size());
  const bool dir = fs::is_directory(source);
  for (size_t i = 0; i < local.size(); ++i) {
    local[i] = dir ? (fs::path(source) / m.files[i].path).string() : source;
  }
  return local;
}

using ChunkList = std::vector<std::pair<uint32_t, uint32_t>>;  // (file, chunk)

// Sends the chunks work[k], for k drawn from `next` until it runs out, as
// frames on `conn` (not the end frame). Several connections may share one
// `next`, so faster streams take more. `sent(len, wire)` is told of each
// chunk and may stop the sending with an error.
Status SendChunks(Socket& conn, const Manifest& m, const std::vector<std::string>& local,
                  const ChunkList& work, std::atomic<size_t>& next, bool compress, Pacer& pacer,
                  const std::function<Status(uint64_t len, uint64_t wire)>& sent) {
  std::vector<char> buf(m.chunk_bytes);
  std::vector<char> packed(compress ? ZSTD_compressBound(m.chunk_bytes) : 0);
  std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> cctx(compress ? ZSTD_createCCtx() : nullptr,
                                                          ZSTD_freeCCtx);
  int fd = -1;
  uint32_t fd_file = kEndOfData;  // one file open at a time
  struct CloseFd {
    int& fd;
    ~CloseFd() {
      if (fd >= 0) ::close(fd);
    }
  } close_fd{fd};
  for (;;) {
    size_t k = next++;
    if (k >= work.size()) return Status::Ok();
    auto [file, chunk] = work[k];
    const FileEntry& e = m.files[file];
    const uint64_t len = ChunkLength(e.size, m.chunk_bytes, chunk);
    if (fd_file != file) {
      if (fd >= 0) ::close(fd);
      fd = ::open(local[file].c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) return FailedPrecondition(Errno("cannot open " + local[file]));
      fd_file = file;
    }
    const uint64_t offset = chunk * m.chunk_bytes;
    if (!cctx && !conn.tls()) {
      // Straight from the file to the socket (sendfile: no copy through
      // this process); the receiver checks it all the same.
      pacer.Take(len);
      uint32_t header[4] = {htole32(file), htole32(chunk), htole32(static_cast<uint32_t>(len)), 0};
      CPN_RETURN_IF_ERROR(conn.SendAll(header, sizeof header));
      off_t at = static_cast<off_t>(offset);
      uint64_t left = len;
      while (left > 0) {
        ssize_t n = ::sendfile(conn.fd(), fd, &at, left);
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) return FailedPrecondition(local[file] + " shrank while being sent");
        if (n < 0) return Unavailable(Errno("transfer connection lost while sending"));
        left -= static_cast<uint64_t>(n);
      }
      CPN_RETURN_IF_ERROR(sent(len, len));
      continue;
    }
    CPN_RETURN_IF_ERROR(ReadAt(fd, buf.data(), len, offset, local[file]));
    const char* payload = buf.data();
    uint64_t wire = len;
    uint32_t flags = 0;
    if (cctx) {
      size_t n = ZSTD_compressCCtx(cctx.get(), packed.data(), packed.size(), buf.data(), len, 1);
      if (!ZSTD_isError(n) && n * 10 < len * 9) {
        payload = packed.data();
        wire = n;
        flags = kFlagZstd;
      }
    }
    pacer.Take(wire);
    uint32_t header[4] = {htole32(file), htole32(chunk), htole32(static_cast<uint32_t>(wire)),
                          htole32(flags)};
    CPN_RETURN_IF_ERROR(conn.SendAll(header, sizeof header));
    CPN_RETURN_IF_ERROR(conn.SendAll(payload, wire));
    CPN_RETURN_IF_ERROR(sent(len, wire));
  }
}

}  // namespace

// ---------------------------------------------------------------- receiver

namespace {

struct IncomingFile {
  FileEntry entry;
  std::string final_path, part_path;
  int fd = -1;
  std::vector<uint8_t> have;  // per chunk: verified on disk
  bool complete = false;      // already in place, nothing to do
};

struct Session {
  std::mutex mu;
  Manifest manifest;
  std::vector<IncomingFile> files;
  uint64_t bad_chunks = 0;
  ~Session() {
    for (auto& f : files) {
      if (f.fd >= 0) ::close(f.fd);
    }
  }
};

// Whether `path`, every link in it resolved, is `root` or lies below it. A
// plain prefix test would let "/data" admit "/data2/x".
bool ResolvesInside(const fs::path& path, const std::string& root) {
  std::error_code path_ec, root_ec;
  const std::string real = fs::weakly_canonical(path, path_ec).string();
  std::string base = fs::weakly_canonical(root, root_ec).string();
  if (path_ec || root_ec) return false;
  if (real == base) return true;
  if (base.empty() || base.back() != '/') base += '/';
  return real.rfind(base, 0) == 0;
}

Status MakeParents(const std::string& path, const std::string& root) {
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  if (ec)
    return FailedPrecondition("cannot create " + fs::path(path).parent_path().string() + ": " +
                              ec.message());
  // A symbolic link planted inside the root must not lead out of it.
  if (!ResolvesInside(fs::path(path).parent_path(), root)) {
    return InvalidArgument("path " + path + " resolves outside the site's data root");
  }
  return Status::Ok();
}

// Opens (or reopens) a file's part file and finds which chunks it already
// holds intact; a finished file that matches is left alone, one that does
// not is repaired through a part file.
Status Prepare(IncomingFile& f, uint64_t chunk_bytes, const std::string& root) {
  CPN_RETURN_IF_ERROR(MakeParents(f.final_path, root));
  const uint64_t n = ChunkCount(f.entry.size, chunk_bytes);
  f.have.assign(n, 0);
  std::error_code ec;
  bool part_exists = fs::exists(f.part_path, ec);
  if (!part_exists && fs::is_regular_file(f.final_path, ec) &&
      fs::file_size(f.final_path, ec) == f.entry.size) {
    int fd = ::open(f.final_path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0) {
      std::vector<std::string> chunks;
      std::string digest;
      Status s = HashFile(fd, f.entry.size, chunk_bytes, f.final_path, &chunks, &digest);
      ::close(fd);
      if (s.ok() && digest == f.entry.digest && chunks == f.entry.chunks) {
        f.complete = true;
        std::fill(f.have.begin(), f.have.end(), 1);
        return Status::Ok();
      }
      // Damaged in place: repair a copy, then swap it in.
      fs::copy_file(f.final_path, f.part_path, fs::copy_options::overwrite_existing, ec);
      part_exists = !ec;
    }
  }
  f.fd = ::open(f.part_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (f.fd < 0) return FailedPrecondition(Errno("cannot open " + f.part_path));
  struct stat sb {};
  ::fstat(f.fd, &sb);
  if (static_cast<uint64_t>(sb.st_size) != f.entry.size) {
    if (::ftruncate(f.fd, static_cast<off_t>(f.entry.size)) != 0) {
      return ResourceExhausted(Errno("cannot size " + f.part_path));
    }
  }
  if (f.entry.size > 0) {
    int rc = ::posix_fallocate(f.fd, 0, static_cast<off_t>(f.entry.size));
    if (rc == ENOSPC) {
      return ResourceExhausted("no space for " + f.final_path + " (" +
                               std::to_string(f.entry.size) + " bytes) at the destination");
    }
  }
  if (part_exists) {
    std::vector<char> buf(chunk_bytes);
    for (uint64_t i = 0; i < n; ++i) {
      uint64_t len = ChunkLength(f.entry.size, chunk_bytes, i);
      if (ReadAt(f.fd, buf.data(), len, i * chunk_bytes, f.part_path).ok() &&
          Hash128(buf.data(), len) == f.entry.chunks[i]) {
        f.have[i] = 1;
      }
    }
  }
  // Not kept open: a transfer may hold many thousands of files.
  ::close(f.fd);
  f.fd = -1;
  return Status::Ok();
}

Json Needed(Session& s) {
  Json need = Json::array();
  for (size_t i = 0; i < s.files.size(); ++i) {
    Json chunks = Json::array();
    for (size_t c = 0; c < s.files[i].have.size(); ++c) {
      if (!s.files[i].have[c]) chunks.push_back(c);
    }
    if (!chunks.empty()) need.push_back({{"file", i}, {"chunks", chunks}});
  }
  return need;
}

// Every chunk is in: check each part file whole, sync, rename into place.
Status Commit(Session& s) {
  for (auto& f : s.files) {
    if (f.complete) continue;
    f.fd = ::open(f.part_path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (f.fd < 0) return FailedPrecondition(Errno("cannot open " + f.part_path));
    std::vector<std::string> chunks;
    std::string digest;
    CPN_RETURN_IF_ERROR(
        HashFile(f.fd, f.entry.size, s.manifest.chunk_bytes, f.part_path, &chunks, &digest));
    if (digest != f.entry.digest) {
      return Internal("file " + f.entry.path + " does not match its digest after transfer");
    }
    if (::fsync(f.fd) != 0) return ResourceExhausted(Errno("cannot sync " + f.part_path));
    ::close(f.fd);
    f.fd = -1;
    if (::rename(f.part_path.c_str(), f.final_path.c_str()) != 0) {
      return FailedPrecondition(Errno("cannot rename into " + f.final_path));
    }
    int dir = ::open(fs::path(f.final_path).parent_path().c_str(), O_RDONLY | O_DIRECTORY);
    if (dir >= 0) {
      ::fsync(dir);
      ::close(dir);
    }
    f.complete = true;
  }
  return Status::Ok();
}

// Adds the manifest's files to `s`, destined for `dest_dir` (inside `root`),
// and finds what each already holds.
Status AddFiles(Session& s, const std::string& dest_dir, const std::string& root) {
  for (const auto& e : s.manifest.files) {
    IncomingFile f;
    f.entry = e;
    auto p = ResolveUnder(dest_dir, e.path);
    if (!p.ok()) return p.status();
    f.final_path = *p;
    fs::path fp(*p);
    f.part_path =
        (fp.parent_path() / (".cpn-part-" + e.digest + "-" + fp.filename().string())).string();
    Status st = Prepare(f, s.manifest.chunk_bytes, root);
    if (!st.ok()) {
      if (f.fd >= 0) ::close(f.fd);
      return st;
    }
    s.files.push_back(std::move(f));
  }
  return Status::Ok();
}

// Reads chunk frames from `conn` into `s`'s part files until the end frame
// (true) or a broken connection or malformed frame (false). Each chunk is
// checked before it is written; one that fails is counted and left missing,
// to be asked for again. `received(len, wire)`, if set, is told of each
// chunk written and may stop the reading by answering false.
bool ReceiveFrames(Socket& conn, Session& s, std::atomic<int>* corrupt_next,
                   const std::function<bool(uint64_t len, uint64_t wire)>& received) {
  const uint64_t chunk_bytes = s.manifest.chunk_bytes;
  std::vector<char> buf(chunk_bytes);
  std::vector<char> packed(ZSTD_compressBound(chunk_bytes));
  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> dctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  for (;;) {
    auto file = conn.RecvU32();
    if (!file.ok()) return false;
    if (*file == kEndOfData) return true;
    auto chunk = conn.RecvU32();
    auto wire = conn.RecvU32();
    auto flags = conn.RecvU32();
    if (!chunk.ok() || !wire.ok() || !flags.ok() || *file >= s.files.size()) return false;
    IncomingFile& f = s.files[*file];
    if (*chunk >= f.have.size()) return false;
    const uint64_t expected = ChunkLength(f.entry.size, chunk_bytes, *chunk);
    uint64_t len = 0;
    if ((*flags & kFlagZstd) != 0) {
      if (*wire > packed.size()) return false;
      if (!conn.RecvAll(packed.data(), *wire).ok()) return false;
      size_t n = ZSTD_decompressDCtx(dctx.get(), buf.data(), expected, packed.data(), *wire);
      if (ZSTD_isError(n) || n != expected) {
        std::lock_guard lock(s.mu);
        s.bad_chunks++;
        continue;
      }
      len = expected;
    } else {
      if (*wire != expected) return false;
      if (!conn.RecvAll(buf.data(), *wire).ok()) return false;
      len = *wire;
    }
    if (corrupt_next != nullptr && corrupt_next->load() > 0 && (*corrupt_next)-- > 0) {
      buf[len / 2] ^= 0x5a;  // a damaged chunk, as a faulty link would deliver
    }
    if (Hash128(buf.data(), len) != f.entry.chunks[*chunk]) {
      std::lock_guard lock(s.mu);
      s.bad_chunks++;
      continue;  // asked for again by the next check
    }
    int fd = ::open(f.part_path.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return false;
    Status written = WriteAt(fd, buf.data(), len, *chunk * chunk_bytes, f.part_path);
    ::close(fd);
    if (!written.ok()) return false;
    {
      std::lock_guard lock(s.mu);
      f.have[*chunk] = 1;
    }
    if (received && !received(len, *wire)) return false;
  }
}

// The chunks still missing, as (file, chunk) pairs.
ChunkList Missing(Session& s) {
  std::lock_guard lock(s.mu);
  ChunkList out;
  for (size_t i = 0; i < s.files.size(); ++i) {
    for (size_t c = 0; c < s.files[i].have.size(); ++c) {
      if (!s.files[i].have[c]) out.emplace_back(i, c);
    }
  }
  return out;
}

// A path under the root that is served (pulled or relayed), or why not. A
// symbolic link planted above it must not lead out of the root.
Result<std::string> ServedPath(const std::string& root, const std::string& relative) {
  auto p = ResolveUnder(root, relative);
  if (!p.ok()) return p.status();
  if (!ResolvesInside(*p, root)) {
    return InvalidArgument("path " + relative + " resolves outside the site's data root");
  }
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(*p, ec))) {
    return NotFound("path " + relative + " does not exist in the site's data root");
  }
  return *p;
}

// A source being served to a puller: its manifest, where its files are,
// and how to send them.
struct Outgoing {
  Manifest manifest;
  std::vector<std::string> local;
  bool compress = false;
  std::string congestion;
  std::unique_ptr<Pacer> pacer;
};

}  // namespace

struct TransferServer::Impl {
  std::string root, address;
  int port = 0;
  Socket listener;
  std::thread acceptor;
  std::atomic<bool> stopping{false};
  std::mutex mu;
  std::map<std::string, std::shared_ptr<Session>> sessions;
  std::map<std::string, std::shared_ptr<Outgoing>> outgoing;  // pulls being served
  struct Worker {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::vector<Worker> workers;  // finished ones are joined at the next accept
  std::set<int> open_fds;       // shut down by Stop(), so no worker waits forever
  std::atomic<int>* corrupt_next = nullptr;
  std::atomic<int> active{0};
  TlsServerConfig tls_config;
  SslCtx tls{nullptr, SSL_CTX_free};

  void Serve(Socket conn);
  void Control(Socket& conn);
  void Data(Socket& conn);
  void ServePull(Socket& conn, const Json& offer);
  void PullData(Socket& conn);
  void ServeRelay(Socket& conn, const Json& offer);
  std::string NewSessionId();
};

TransferServer::TransferServer(std::string root, std::string address, int port, TlsServerConfig tls)
    : impl_(std::make_unique<Impl>()) {
  impl_->tls_config = std::move(tls);
  impl_->root = std::move(root);
  impl_->address = std::move(address);
  impl_->port = port;
  impl_->corrupt_next = &corrupt_next_;
}

TransferServer::~TransferServer() { Stop(); }

Result<int> TransferServer::Start() {
  IgnoreSigpipe();
  if (!impl_->tls_config.cert_file.empty() || !impl_->tls_config.key_file.empty()) {
    SslCtx ctx(SSL_CTX_new(TLS_server_method()), SSL_CTX_free);
    if (!ctx) return Internal("TLS: " + TlsError());
    SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
    if (SSL_CTX_use_certificate_chain_file(ctx.get(), impl_->tls_config.cert_file.c_str()) != 1) {
      return InvalidArgument("TLS: cannot load certificate " + impl_->tls_config.cert_file + ": " +
                             TlsError());
    }
    if (SSL_CTX_use_PrivateKey_file(ctx.get(), impl_->tls_config.key_file.c_str(),
                                    SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx.get()) != 1) {
      return InvalidArgument("TLS: cannot load key " + impl_->tls_config.key_file +
                             " (or it does not match the certificate): " + TlsError());
    }
    impl_->tls = std::move(ctx);
  }
  std::error_code ec;
  fs::create_directories(impl_->root, ec);
  if (ec) return FailedPrecondition("cannot create data root " + impl_->root + ": " + ec.message());
  Socket s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  int one = 1;
  ::setsockopt(s.fd(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(impl_->port));
  if (::inet_pton(AF_INET, impl_->address.c_str(), &addr.sin_addr) != 1) {
    return InvalidArgument("bad listen address '" + impl_->address + "'");
  }
  if (::bind(s.fd(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(s.fd(), 128) != 0) {
    return Unavailable(
        Errno("cannot listen on " + impl_->address + ":" + std::to_string(impl_->port)));
  }
  socklen_t len = sizeof addr;
  ::getsockname(s.fd(), reinterpret_cast<sockaddr*>(&addr), &len);
  impl_->port = ntohs(addr.sin_port);
  impl_->listener = std::move(s);
  Impl* impl = impl_.get();
  impl_->acceptor = std::thread([impl] {
    while (!impl->stopping) {
      int fd = ::accept4(impl->listener.fd(), nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        if (impl->stopping) return;
        continue;
      }
      std::lock_guard lock(impl->mu);
      ++impl->active;  // counted from accept, so a waiter never misses it
      auto& ws = impl->workers;
      for (size_t i = 0; i < ws.size();) {
        if (ws[i].done->load()) {
          ws[i].thread.join();
          ws[i] = std::move(ws.back());
          ws.pop_back();
        } else {
          ++i;
        }
      }
      auto done = std::make_shared<std::atomic<bool>>(false);
      ws.push_back({std::thread([impl, fd, done] {
                      impl->Serve(Socket(fd));
                      *done = true;
                    }),
                    done});
    }
  });
  return impl_->port;
}

void TransferServer::Stop() {
  if (!impl_ || impl_->stopping.exchange(true)) return;
  ::shutdown(impl_->listener.fd(), SHUT_RDWR);
  if (impl_->acceptor.joinable()) impl_->acceptor.join();
  std::vector<Impl::Worker> workers;
  {
    std::lock_guard lock(impl_->mu);
    workers.swap(impl_->workers);
    for (int fd : impl_->open_fds) ::shutdown(fd, SHUT_RDWR);
  }
  for (auto& w : workers) w.thread.join();
}

int TransferServer::ActiveConnections() const { return impl_->active.load(); }

void TransferServer::Impl::Serve(Socket conn) {
  struct Count {
    std::atomic<int>& n;
    ~Count() { --n; }
  } count{active};
  {
    std::lock_guard lock(mu);
    if (stopping) return;
    open_fds.insert(conn.fd());
  }
  struct Forget {
    Impl* impl;
    int fd;
    ~Forget() {
      std::lock_guard lock(impl->mu);
      impl->open_fds.erase(fd);
    }
  } forget{this, conn.fd()};
  int one = 1;
  ::setsockopt(conn.fd(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  // A peer silent this long is gone: data connections carry chunks
  // continuously; the control connection waits out a whole round of data.
  timeval data_timeout{60, 0};
  ::setsockopt(conn.fd(), SOL_SOCKET, SO_RCVTIMEO, &data_timeout, sizeof data_timeout);
  if (tls && !conn.Handshake(tls.get(), false, "").ok()) return;
  char magic[6];
  if (!conn.RecvAll(magic, 6).ok()) return;
  if (std::memcmp(magic, kControlMagic, 6) == 0) {
    timeval control_timeout{6 * 3600, 0};
    ::setsockopt(conn.fd(), SOL_SOCKET, SO_RCVTIMEO, &control_timeout, sizeof control_timeout);
    Control(conn);
  } else if (std::memcmp(magic, kDataMagic, 6) == 0) {
    Data(conn);
  } else if (std::memcmp(magic, kPullDataMagic, 6) == 0) {
    PullData(conn);
  }
}

std::string TransferServer::Impl::NewSessionId() {
  static std::atomic<uint64_t> counter{0};
  std::random_device rd;
  uint64_t r[2] = {(uint64_t{rd()} << 32) | rd(), counter++};
  return Hash128(r, sizeof r);
}

void TransferServer::Impl::Control(Socket& conn) {
  auto reply_error = [&](const Status& s) {
    (void)conn.SendMessage(
        {{"ok", false}, {"error", s.message()}, {"code", StatusCodeName(s.code())}});
  };
  auto offer = conn.RecvMessage();
  if (!offer.ok()) return;
  if (offer->contains("pull")) return ServePull(conn, *offer);
  if (offer->contains("relay")) return ServeRelay(conn, *offer);
  auto manifest = ManifestFromJson((*offer)["manifest"]);
  if (!manifest.ok()) return reply_error(manifest.status());
  std::string dest = offer->value("dest", "");
  auto dest_path = ResolveUnder(root, dest);
  if (!dest_path.ok()) return reply_error(dest_path.status());
  auto session = std::make_shared<Session>();
  session->manifest = *manifest;
  if (Status s = AddFiles(*session, *dest_path, root); !s.ok()) return reply_error(s);
  const std::string id = NewSessionId();
  {
    std::lock_guard lock(mu);
    sessions[id] = session;
  }
  Json need;
  {
    std::lock_guard lock(session->mu);
    need = Needed(*session);
  }
  if (!conn.SendMessage({{"ok", true}, {"session", id}, {"need", need}}).ok()) return;
  // Then: "check" until nothing is missing, or "commit".
  for (;;) {
    auto msg = conn.RecvMessage();
    if (!msg.ok()) break;
    std::string op = msg->value("op", "");
    std::lock_guard lock(session->mu);
    if (op == "ping") {
      (void)conn.SendMessage({{"ok", true}});
    } else if (op == "check") {
      (void)conn.SendMessage(
          {{"ok", true}, {"need", Needed(*session)}, {"bad_chunks", session->bad_chunks}});
    } else if (op == "commit") {
      Json need_now = Needed(*session);
      if (!need_now.empty()) {
        (void)conn.SendMessage({{"ok", false}, {"error", "chunks missing"}, {"need", need_now}});
        continue;
      }
      Status s = Commit(*session);
      if (!s.ok()) {
        reply_error(s);
      } else {
        (void)conn.SendMessage({{"ok", true}, {"done", true}});
      }
      break;
    } else {
      break;
    }
  }
  std::lock_guard lock(mu);
  sessions.erase(id);
}

// The session a data connection names (a u32 length, then the id), or null.
template <class T>
std::shared_ptr<T> SessionNamedBy(Socket& conn, std::mutex& mu,
                                  const std::map<std::string, std::shared_ptr<T>>& table) {
  char id_buf[64];
  auto id_len = conn.RecvU32();
  if (!id_len.ok() || *id_len > sizeof id_buf) return nullptr;
  if (!conn.RecvAll(id_buf, *id_len).ok()) return nullptr;
  std::lock_guard lock(mu);
  auto it = table.find(std::string(id_buf, *id_len));
  return it == table.end() ? nullptr : it->second;
}

void TransferServer::Impl::Data(Socket& conn) {
  std::shared_ptr<Session> session = SessionNamedBy(conn, mu, sessions);
  if (session == nullptr) return;
  if (!ReceiveFrames(conn, *session, corrupt_next, nullptr)) return;
  (void)conn.SendU32(0);  // acknowledges the end: everything before it is written
}

Json ErrorReply(const Status& s) {
  return {{"ok", false}, {"error", s.message()}, {"code", StatusCodeName(s.code())}};
}

void TransferServer::Impl::ServePull(Socket& conn, const Json& offer) {
  auto out = std::make_shared<Outgoing>();
  const Json& pull = offer["pull"];
  const uint64_t chunk_bytes = offer.value("chunk_bytes", kDefaultChunkBytes);
  if (!pull.is_string() || chunk_bytes < 4096 || chunk_bytes > (256ull << 20)) {
    (void)conn.SendMessage(
        ErrorReply(InvalidArgument("pull: a path and chunk_bytes of 4 KiB to 256 MiB")));
    return;
  }
  auto path = ServedPath(root, pull.get<std::string>());
  if (!path.ok()) return (void)conn.SendMessage(ErrorReply(path.status()));
  auto manifest = BuildManifest(*path, chunk_bytes);
  if (!manifest.ok()) return (void)conn.SendMessage(ErrorReply(manifest.status()));
  out->manifest = std::move(manifest).value();
  out->local = LocalPaths(*path, out->manifest);
  out->compress = offer.value("compress", false);
  out->congestion = offer.value("congestion", std::string());
  out->pacer = std::make_unique<Pacer>(offer.value("rate_limit_mbps", 0.0));
  const std::string id = NewSessionId();
  {
    std::lock_guard lock(mu);
    outgoing[id] = out;
  }
  if (conn.SendMessage({{"ok", true}, {"session", id}, {"manifest", ManifestToJson(out->manifest)}})
          .ok()) {
    // The puller's data connections fetch chunks while this one answers
    // pings; its close (or "done") ends the session.
    for (;;) {
      auto msg = conn.RecvMessage();
      if (!msg.ok() || msg->value("op", "") != "ping") break;
      if (!conn.SendMessage({{"ok", true}}).ok()) break;
    }
  }
  std::lock_guard lock(mu);
  outgoing.erase(id);
}

void TransferServer::Impl::PullData(Socket& conn) {
  std::shared_ptr<Outgoing> out = SessionNamedBy(conn, mu, outgoing);
  if (out == nullptr) return;
  auto want = conn.RecvMessage();
  if (!want.ok() || !(*want)["chunks"].is_array()) return;
  ChunkList work;
  for (const auto& c : (*want)["chunks"]) {
    if (!c.is_array() || c.size() != 2 || !c[0].is_number_unsigned() ||
        !c[1].is_number_unsigned()) {
      return;
    }
    uint64_t file = c[0], chunk = c[1];
    if (file >= out->manifest.files.size() || chunk >= out->manifest.files[file].chunks.size()) {
      return;
    }
    work.emplace_back(static_cast<uint32_t>(file), static_cast<uint32_t>(chunk));
  }
  SetCongestion(conn.fd(), out->congestion);
  std::atomic<size_t> next{0};
  Status s = SendChunks(conn, out->manifest, out->local, work, next, out->compress, *out->pacer,
                        [](uint64_t, uint64_t) { return Status::Ok(); });
  if (s.ok()) (void)conn.SendU32(kEndOfData);
}

void TransferServer::Impl::ServeRelay(Socket& conn, const Json& offer) {
  const Json& r = offer["relay"];
  if (!r.is_object() || !r["path"].is_string() || !r["host"].is_string() ||
      !r["port"].is_number_integer() || !r["dest"].is_string()) {
    (void)conn.SendMessage(ErrorReply(InvalidArgument("relay: path, host, port and dest")));
    return;
  }
  auto path = ServedPath(root, r["path"].get<std::string>());
  if (!path.ok()) return (void)conn.SendMessage(ErrorReply(path.status()));
  TransferOptions o;
  o.streams = r.value("streams", 0);
  o.congestion = r.value("congestion", std::string("bbr"));
  o.compress = r.value("compress", false);
  o.rate_limit_mbps = r.value("rate_limit_mbps", 0.0);
  o.chunk_bytes = r.value("chunk_bytes", kDefaultChunkBytes);
  o.stop_after_chunks = r.value("stop_after_chunks", uint64_t{0});
  o.tls = r.value("tls", false);
  o.tls_ca_file = tls_config.relay_ca_file;
  // Progress goes back to the caller at most every quarter second; a caller
  // that went away does not stop the relay, which completes (or fails) as a
  // push would.
  auto last = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  o.progress = [&](uint64_t sent, uint64_t total) {
    auto now = std::chrono::steady_clock::now();
    if (now - last < std::chrono::milliseconds(250) && sent < total) return;
    last = now;
    (void)conn.SendMessage({{"progress", {{"sent", sent}, {"total", total}}}});
  };
  auto stats = Push(r["host"].get<std::string>(), r["port"].get<int>(), *path,
                    r["dest"].get<std::string>(), o);
  if (!stats.ok()) return (void)conn.SendMessage(ErrorReply(stats.status()));
  (void)conn.SendMessage({{"ok", true}, {"done", true}, {"stats", Json::parse(stats->ToJson())}});
}

namespace {

// The round trip: the best of three pings on a control connection.
Result<double> MeasureRtt(Socket& control) {
  double rtt_s = 1;
  for (int i = 0; i < 3; ++i) {
    auto p0 = std::chrono::steady_clock::now();
    CPN_RETURN_IF_ERROR(control.SendMessage({{"op", "ping"}}));
    auto pong = control.RecvMessage();
    if (!pong.ok()) return pong.status();
    rtt_s = std::min(rtt_s,
                     std::chrono::duration<double>(std::chrono::steady_clock::now() - p0).count());
  }
  return rtt_s;
}

// Enough streams to keep 10 Gbit/s in flight for one round trip with each
// stream's largest socket buffer, between 2 and 8; or what was asked.
int ChooseStreams(int requested, double rtt_s) {
  if (requested > 0) return requested;
  const double in_flight_bytes = 10e9 / 8 * rtt_s;
  return static_cast<int>(
      std::clamp(std::ceil(in_flight_bytes / static_cast<double>(MaxSendBuffer())), 2.0, 8.0));
}

// The start of a data connection: its magic, then the session it serves.
Status OpenDataConnection(Socket& conn, const char* magic, const std::string& session) {
  CPN_RETURN_IF_ERROR(conn.SendAll(magic, 6));
  CPN_RETURN_IF_ERROR(conn.SendU32(static_cast<uint32_t>(session.size())));
  return conn.SendAll(session.data(), session.size());
}

Result<SslCtx> MaybeClientContext(const TransferOptions& options) {
  if (!options.tls) return SslCtx(nullptr, SSL_CTX_free);
  return ClientContext(options.tls_ca_file);
}

}  // namespace

std::string TransferStats::ToJson() const {
  return Json{{"files", files},
              {"bytes_total", bytes_total},
              {"bytes_sent", bytes_sent},
              {"bytes_on_wire", bytes_on_wire},
              {"seconds", seconds},
              {"data_seconds", data_seconds},
              {"streams", streams},
              {"congestion", congestion},
              {"rtt_ms", rtt_ms},
              {"chunks_sent", chunks_sent},
              {"chunks_skipped", chunks_skipped},
              {"chunks_resent", chunks_resent}}
      .dump();
}

Result<TransferStats> Push(const std::string& host, int port, const std::string& source,
                           const std::string& dest, const TransferOptions& options) {
  IgnoreSigpipe();
  const auto t0 = std::chrono::steady_clock::now();
  if (options.streams < 0 || options.streams > 64) {
    return InvalidArgument("streams: between 1 and 64 (0 chooses)");
  }
  auto manifest = BuildManifest(source, options.chunk_bytes);
  if (!manifest.ok()) return manifest.status();
  auto tls = MaybeClientContext(options);
  if (!tls.ok()) return tls.status();
  auto control = Connect(host, port, tls->get());
  if (!control.ok()) return control.status();
  CPN_RETURN_IF_ERROR(control->SendAll(kControlMagic, 6));
  CPN_RETURN_IF_ERROR(
      control->SendMessage({{"manifest", ManifestToJson(*manifest)}, {"dest", dest}}));
  auto reply = control->RecvMessage();
  if (!reply.ok()) return reply.status();
  if (!reply->value("ok", false)) {
    return FailedPrecondition("the destination refused the transfer: " +
                              reply->value("error", std::string("no reason given")));
  }
  const std::string session = reply->value("session", "");
  TransferStats stats;
  stats.files = manifest->files.size();
  stats.bytes_total = manifest->TotalBytes();
  uint64_t all_chunks = 0;
  for (const auto& f : manifest->files) all_chunks += f.chunks.size();

  auto rtt_s = MeasureRtt(*control);
  if (!rtt_s.ok()) return rtt_s.status();
  stats.rtt_ms = *rtt_s * 1000;
  const int streams = ChooseStreams(options.streams, *rtt_s);

  const std::vector<std::string> local = LocalPaths(source, *manifest);
  Json need = (*reply)["need"];
  bool first_round = true;
  std::mutex progress_mu;
  uint64_t progress_sent = 0, progress_total = 0;
  Pacer pacer(options.rate_limit_mbps);
  const auto data_start = std::chrono::steady_clock::now();
  for (int round = 0; round < 20; ++round) {
    ChunkList work;
    for (const auto& n : need) {
      for (const auto& c : n["chunks"]) {
        work.emplace_back(n["file"].get<uint32_t>(), c.get<uint32_t>());
      }
    }
    if (first_round) {
      stats.chunks_skipped = all_chunks - work.size();
    } else {
      stats.chunks_resent += work.size();
    }
    first_round = false;
    if (work.empty()) break;
    for (const auto& [file, chunk] : work) {
      progress_total += ChunkLength(manifest->files[file].size, manifest->chunk_bytes, chunk);
    }
    std::atomic<size_t> next{0};
    std::atomic<uint64_t> sent_chunks{0}, sent_bytes{0}, wire_bytes{0};
    std::mutex err_mu;
    Status failure;
    const int used = std::max(1, std::min<int>(streams, static_cast<int>(work.size())));
    stats.streams = std::max(stats.streams, used);
    std::vector<std::thread> threads;
    for (int t = 0; t < used; ++t) {
      threads.emplace_back([&, t] {
        auto fail = [&](Status s) {
          std::lock_guard lock(err_mu);
          if (failure.ok()) failure = std::move(s);
        };
        auto conn = Connect(host, port, tls->get());
        if (!conn.ok()) return fail(conn.status());
        SetCongestion(conn->fd(), options.congestion);
        if (t == 0) {
          std::lock_guard lock(err_mu);
          stats.congestion = CongestionOf(conn->fd());
        }
        Status s = OpenDataConnection(*conn, kDataMagic, session);
        if (!s.ok()) return fail(s);
        s = SendChunks(*conn, *manifest, local, work, next, options.compress, pacer,
                       [&](uint64_t len, uint64_t wire) {
                         uint64_t n = ++sent_chunks;
                         sent_bytes += len;
                         wire_bytes += wire;
                         if (options.progress) {
                           std::lock_guard lock(progress_mu);
                           progress_sent += len;
                           options.progress(progress_sent, progress_total);
                         }
                         if (options.stop_after_chunks > 0 && n >= options.stop_after_chunks) {
                           return Unavailable("transfer stopped after " +
                                              std::to_string(options.stop_after_chunks) +
                                              " chunks");
                         }
                         return Status::Ok();
                       });
        if (!s.ok()) return fail(s);
        s = conn->SendU32(kEndOfData);
        if (s.ok()) s = conn->RecvU32().status();  // the receiver has written it all
        if (!s.ok()) fail(s);
      });
    }
    for (auto& t : threads) t.join();
    stats.chunks_sent += sent_chunks;
    stats.bytes_sent += sent_bytes;
    stats.bytes_on_wire += wire_bytes;
    if (!failure.ok()) return failure;
    CPN_RETURN_IF_ERROR(control->SendMessage({{"op", "check"}}));
    auto check = control->RecvMessage();
    if (!check.ok()) return check.status();
    need = (*check)["need"];
    if (need.empty()) break;
  }
  if (!need.empty()) return Internal("chunks kept failing their check after 20 rounds");
  stats.data_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - data_start).count();
  CPN_RETURN_IF_ERROR(control->SendMessage({{"op", "commit"}}));
  auto done = control->RecvMessage();
  if (!done.ok()) return done.status();
  if (!done->value("ok", false)) {
    return Internal("the destination could not complete the transfer: " +
                    done->value("error", std::string("no reason given")));
  }
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return stats;
}

Result<TransferStats> Pull(const std::string& host, int port, const std::string& remote,
                           const std::string& dest_dir, const TransferOptions& options) {
  IgnoreSigpipe();
  const auto t0 = std::chrono::steady_clock::now();
  if (options.streams < 0 || options.streams > 64) {
    return InvalidArgument("streams: between 1 and 64 (0 chooses)");
  }
  if (dest_dir.empty()) return InvalidArgument("pull: no local destination directory");
  std::error_code ec;
  fs::create_directories(dest_dir, ec);
  if (ec) return FailedPrecondition("cannot create " + dest_dir + ": " + ec.message());
  auto tls = MaybeClientContext(options);
  if (!tls.ok()) return tls.status();
  auto control = Connect(host, port, tls->get());
  if (!control.ok()) return control.status();
  CPN_RETURN_IF_ERROR(control->SendAll(kControlMagic, 6));
  CPN_RETURN_IF_ERROR(control->SendMessage({{"pull", remote},
                                            {"chunk_bytes", options.chunk_bytes},
                                            {"compress", options.compress},
                                            {"congestion", options.congestion},
                                            {"rate_limit_mbps", options.rate_limit_mbps}}));
  auto reply = control->RecvMessage();
  if (!reply.ok()) return reply.status();
  if (!reply->value("ok", false)) {
    return FailedPrecondition("the source refused the transfer: " +
                              reply->value("error", std::string("no reason given")));
  }
  // The manifest comes from the other side: its paths are checked like any
  // receiver's, so a hostile source cannot write outside dest_dir.
  auto manifest = ManifestFromJson((*reply)["manifest"]);
  if (!manifest.ok()) return manifest.status().WithContext("the source's manifest");
  const std::string session_id = reply->value("session", "");
  Session session;
  session.manifest = std::move(manifest).value();
  const Manifest& m = session.manifest;
  CPN_RETURN_IF_ERROR(AddFiles(session, dest_dir, dest_dir));

  TransferStats stats;
  stats.files = m.files.size();
  stats.bytes_total = m.TotalBytes();
  uint64_t all_chunks = 0;
  for (const auto& f : m.files) all_chunks += f.chunks.size();
  auto rtt_s = MeasureRtt(*control);
  if (!rtt_s.ok()) return rtt_s.status();
  stats.rtt_ms = *rtt_s * 1000;
  const int streams = ChooseStreams(options.streams, *rtt_s);

  std::mutex progress_mu;
  uint64_t progress_got = 0, progress_total = 0;
  std::atomic<uint64_t> got_chunks{0};
  ChunkList work = Missing(session);
  stats.chunks_skipped = all_chunks - work.size();
  const auto data_start = std::chrono::steady_clock::now();
  for (int round = 0; round < 20 && !work.empty(); ++round) {
    if (round > 0) stats.chunks_resent += work.size();
    for (const auto& [file, chunk] : work) {
      progress_total += ChunkLength(m.files[file].size, m.chunk_bytes, chunk);
    }
    // Each stream asks for one contiguous share of the work, so the source
    // reads its files in order.
    const int used = std::max(1, std::min<int>(streams, static_cast<int>(work.size())));
    stats.streams = std::max(stats.streams, used);
    std::atomic<uint64_t> got_bytes{0}, wire_bytes{0};
    std::mutex err_mu;
    Status failure;
    std::vector<std::thread> threads;
    for (int t = 0; t < used; ++t) {
      threads.emplace_back([&, t] {
        auto fail = [&](Status s) {
          std::lock_guard lock(err_mu);
          if (failure.ok()) failure = std::move(s);
        };
        const size_t from = work.size() * t / used, to = work.size() * (t + 1) / used;
        Json want = Json::array();
        for (size_t k = from; k < to; ++k) want.push_back({work[k].first, work[k].second});
        auto conn = Connect(host, port, tls->get());
        if (!conn.ok()) return fail(conn.status());
        if (t == 0) {
          std::lock_guard lock(err_mu);
          stats.congestion = options.congestion;  // asked of the source, which sends
        }
        Status s = OpenDataConnection(*conn, kPullDataMagic, session_id);
        if (s.ok()) s = conn->SendMessage({{"chunks", want}});
        if (!s.ok()) return fail(s);
        bool stopped = false;
        bool complete = ReceiveFrames(*conn, session, nullptr, [&](uint64_t len, uint64_t wire) {
          uint64_t n = ++got_chunks;
          got_bytes += len;
          wire_bytes += wire;
          if (options.progress) {
            std::lock_guard lock(progress_mu);
            progress_got += len;
            options.progress(progress_got, progress_total);
          }
          stopped = options.stop_after_chunks > 0 && n >= options.stop_after_chunks;
          return !stopped;
        });
        if (stopped) {
          return fail(Unavailable("transfer stopped after " +
                                  std::to_string(options.stop_after_chunks) + " chunks"));
        }
        if (!complete) fail(Unavailable("the source closed a data connection mid-transfer"));
      });
    }
    for (auto& t : threads) t.join();
    stats.bytes_sent += got_bytes;
    stats.bytes_on_wire += wire_bytes;
    if (!failure.ok()) return failure;
    work = Missing(session);
  }
  stats.chunks_sent = got_chunks;
  if (!work.empty()) return Internal("chunks kept failing their check after 20 rounds");
  stats.data_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - data_start).count();
  CPN_RETURN_IF_ERROR(Commit(session));
  (void)control->SendMessage({{"op", "done"}});
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return stats;
}

Result<TransferStats> Relay(const Endpoint& from, const std::string& path, const Endpoint& to,
                            const std::string& dest, const TransferOptions& options) {
  IgnoreSigpipe();
  if (options.streams < 0 || options.streams > 64) {
    return InvalidArgument("streams: between 1 and 64 (0 chooses)");
  }
  auto tls = MaybeClientContext(options);
  if (!tls.ok()) return tls.status();
  auto control = Connect(from.host, from.port, tls->get());
  if (!control.ok()) return control.status();
  CPN_RETURN_IF_ERROR(control->SendAll(kControlMagic, 6));
  CPN_RETURN_IF_ERROR(control->SendMessage({{"relay",
                                             {{"path", path},
                                              {"host", to.host},
                                              {"port", to.port},
                                              {"tls", to.tls},
                                              {"dest", dest},
                                              {"streams", options.streams},
                                              {"congestion", options.congestion},
                                              {"compress", options.compress},
                                              {"rate_limit_mbps", options.rate_limit_mbps},
                                              {"chunk_bytes", options.chunk_bytes},
                                              {"stop_after_chunks", options.stop_after_chunks}}}}));
  for (;;) {
    auto msg = control->RecvMessage();
    if (!msg.ok()) return msg.status().WithContext("relay from " + from.host);
    if (msg->contains("progress")) {
      const Json& p = (*msg)["progress"];
      if (options.progress)
        options.progress(p.value("sent", uint64_t{0}), p.value("total", uint64_t{0}));
      continue;
    }
    if (!msg->value("ok", false)) {
      return FailedPrecondition("the source could not relay: " +
                                msg->value("error", std::string("no reason given")));
    }
    const Json& j = (*msg)["stats"];
    TransferStats stats;
    stats.files = j.value("files", uint64_t{0});
    stats.bytes_total = j.value("bytes_total", uint64_t{0});
    stats.bytes_sent = j.value("bytes_sent", uint64_t{0});
    stats.bytes_on_wire = j.value("bytes_on_wire", uint64_t{0});
    stats.seconds = j.value("seconds", 0.0);
    stats.data_seconds = j.value("data_seconds", 0.0);
    stats.streams = j.value("streams", 0);
    stats.congestion = j.value("congestion", std::string());
    stats.rtt_ms = j.value("rtt_ms", 0.0);
    stats.chunks_sent = j.value("chunks_sent", uint64_t{0});
    stats.chunks_skipped = j.value("chunks_skipped", uint64_t{0});
    stats.chunks_resent = j.value("chunks_resent", uint64_t{0});
    return stats;
  }
}

}  // namespace cpn::transfer
