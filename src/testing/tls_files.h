// Test certificates made with the openssl command: a CA, a server
// certificate for 127.0.0.1/localhost signed by it, and client certificates
// with a given common name (signed by the CA, or self-signed: untrusted).
// For tests of TLS and mutual TLS; needs `openssl` on PATH.
#pragma once

#include <string>

namespace cpn::testing {

struct TlsFiles {
  std::string ca_cert, ca_key;
  std::string server_cert, server_key;
};

// Writes ca.pem, ca.key, server.pem and server.key into `dir` (created);
// false if openssl failed.
bool MakeTlsFiles(const std::string& dir, TlsFiles* out);
// A client certificate `name`.pem / `name`.key with this common name, signed
// by the CA of `files` (or self-signed when `trusted` is false).
bool MakeClientCert(const std::string& dir, const TlsFiles& files, const std::string& name,
                    const std::string& common_name, bool trusted, std::string* cert,
                    std::string* key);

}  // namespace cpn::testing
