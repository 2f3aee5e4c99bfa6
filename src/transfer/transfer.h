// Transfer: moving datasets between sites, verified chunk by chunk, resumable.
//
// A site's transfer service (TransferServer, run by its agent) keeps a data
// root. A sender (Push) offers a manifest of files with an XXH3-128 checksum
// per chunk and per file, learns which chunks the receiver lacks (a re-run
// after a kill or a cut link sends only those), and streams them over N
// parallel TCP connections. The receiver checks every chunk before writing
// it, writes into a hidden part file, and at commit verifies the whole-file
// digest, syncs and renames, so a file appears complete or not at all.
// Chunks that failed their check are asked for again. The same service also
// serves its data: Pull copies a path out of a site's root into a local
// directory with the same guarantees (the puller is then the receiver), and
// Relay asks one site's service to push a path to another site's, so data
// moves site to site without passing through the caller. Optionally all over
// TLS. The wire format is in docs/transfer-protocol.md. Every entry point
// ignores SIGPIPE for the process, so a peer that goes away is an error
// value, never a signal. Blocking sockets and
// one thread per connection: a transfer has a handful of connections, not
// thousands.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "src/core/status.h"

namespace cpn::transfer {

constexpr uint64_t kDefaultChunkBytes = 4ull << 20;

struct FileEntry {
  std::string path;  // relative to the transfer's root, '/'-separated
  uint64_t size = 0;
  std::vector<std::string> chunks;  // XXH3-128 of each chunk, 32 hex digits
  std::string digest;               // XXH3-128 of the whole file
};

struct Manifest {
  uint64_t chunk_bytes = kDefaultChunkBytes;
  std::vector<FileEntry> files;
  uint64_t TotalBytes() const;
};

// Reads `source` (a file or a directory tree; symbolic links are refused)
// and builds its manifest. Paths in it are relative to `source` (a single
// file is named by its base name).
Result<Manifest> BuildManifest(const std::string& source, uint64_t chunk_bytes);

// Where `relative` lies under `root`, or an error if it would leave it
// (absolute, "..", empty or odd components).
Result<std::string> ResolveUnder(const std::string& root, const std::string& relative);

// XXH3-128 of `data` as 32 hex digits.
std::string Hash128(const void* data, size_t size);

struct TransferOptions {
  // Parallel data connections; 0 chooses from the measured round trip: the
  // streams needed to keep 10 Gbit/s in flight with each stream's largest
  // send buffer (net.ipv4.tcp_wmem), between 2 and 8.
  int streams = 0;
  // TCP congestion control for the data connections. BBR keeps a long,
  // slightly lossy path full where loss-based control (cubic) collapses;
  // "" keeps the system's default. Falls back to the default if the kernel
  // lacks it.
  std::string congestion = "bbr";
  // Compress chunks with zstd (level 1) when that makes them at least 10%
  // smaller; helps on slow links with compressible data, costs CPU.
  bool compress = false;
  // Sending rate limit over all streams, in Mbit/s of chunk payload; 0: none.
  double rate_limit_mbps = 0;
  // TLS (1.2 or later) on every connection, the receiver's certificate
  // checked against tls_ca_file (empty: the system's CAs) and the host or
  // address connected to. Chunks then go through TLS, not sendfile.
  bool tls = false;
  std::string tls_ca_file;
  uint64_t chunk_bytes = kDefaultChunkBytes;
  // Progress: bytes moved so far (of chunks the receiver needed), and the
  // total to move. Called from the data threads, serialised.
  std::function<void(uint64_t sent, uint64_t total)> progress;
  // Tests: stop after this many chunks have been moved (0: no limit), as a
  // killed sender (or puller) would.
  uint64_t stop_after_chunks = 0;
};

struct TransferStats {
  int streams = 0;             // data connections used
  std::string congestion;      // congestion control they ran
  double rtt_ms = 0;           // round trip measured on the control connection
  double data_seconds = 0;     // moving chunks, without hashing the source
  uint64_t bytes_on_wire = 0;  // chunk payload as sent (compressed where it helped)
  uint64_t files = 0;
  uint64_t bytes_total = 0;  // size of everything offered
  uint64_t bytes_sent = 0;   // chunk payload actually sent (resends included)
  uint64_t chunks_sent = 0;
  uint64_t chunks_skipped = 0;  // already at the receiver, verified
  uint64_t chunks_resent = 0;   // failed the receiver's check, sent again
  double seconds = 0;
  // One line of JSON with every figure (for --json and the relay's reply).
  std::string ToJson() const;
};

// Sends `source` to the receiver at host:port, to `dest` (relative to its
// data root). Idempotent: re-running it completes an interrupted transfer.
Result<TransferStats> Push(const std::string& host, int port, const std::string& source,
                           const std::string& dest, const TransferOptions& options = {});

// Copies `remote` (a file or directory relative to the data root of the
// service at host:port) into the local directory `dest_dir` (created if
// missing): a remote directory's contents land in dest_dir, a remote file
// as dest_dir/its name. Every chunk checked here, part files, resume and
// atomic rename exactly as for a receiver; re-running completes an
// interrupted pull. `options.streams`, `congestion`, `compress` and
// `rate_limit_mbps` are asked of the serving side.
Result<TransferStats> Pull(const std::string& host, int port, const std::string& remote,
                           const std::string& dest_dir, const TransferOptions& options = {});

struct Endpoint {
  std::string host;
  int port = 0;
  bool tls = false;  // the service there requires TLS
};

// Site to site: asks the service at `from` to push its `path` to `to`'s
// `dest` (a third-party transfer; the data never passes through the
// caller). `options.tls`/`tls_ca_file` apply to the caller's connection to
// `from`; `from` checks `to`'s certificate with its own CA (relay_ca_file).
// Progress arrives as `from` reports it. Resumable like Push.
Result<TransferStats> Relay(const Endpoint& from, const std::string& path, const Endpoint& to,
                            const std::string& dest, const TransferOptions& options = {});

// A service's certificate and key (PEM); both empty: plain TCP. The CA file
// checks other services' certificates when this one relays to them (empty:
// the system's CAs).
struct TlsServerConfig {
  std::string cert_file, key_file;
  std::string relay_ca_file;
};

class TransferServer {
 public:
  // Receives into, and serves from, `root` (created if missing). `address`/`port` as for any
  // listener; port 0 picks a free one. With `tls`, every connection must
  // begin with a TLS handshake.
  TransferServer(std::string root, std::string address = "127.0.0.1", int port = 0,
                 TlsServerConfig tls = {});
  ~TransferServer();
  TransferServer(const TransferServer&) = delete;
  TransferServer& operator=(const TransferServer&) = delete;

  Result<int> Start();  // the bound port
  void Stop();
  // Tests: damage the next `n` chunks received (flip one byte) before their
  // check, as a faulty link would.
  void CorruptNextChunks(int n) { corrupt_next_ = n; }
  // Connections being served now (control and data).
  int ActiveConnections() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
  std::atomic<int> corrupt_next_{0};
};

}  // namespace cpn::transfer
