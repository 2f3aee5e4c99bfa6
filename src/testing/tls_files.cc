#include "src/testing/tls_files.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace cpn::testing {

namespace {

bool Run(const std::string& command) {
  return std::system((command + " >/dev/null 2>&1").c_str()) == 0;
}

// openssl -subj separates parts with '/': escape the ones inside a value.
std::string Subject(const std::string& common_name) {
  std::string out = "/CN=";
  for (char c : common_name) out += c == '/' ? std::string("\\/") : std::string(1, c);
  return "'" + out + "'";
}

}  // namespace

bool MakeTlsFiles(const std::string& dir, TlsFiles* out) {
  std::filesystem::create_directories(dir);
  out->ca_cert = dir + "/ca.pem";
  out->ca_key = dir + "/ca.key";
  out->server_cert = dir + "/server.pem";
  out->server_key = dir + "/server.key";
  const std::string ext = dir + "/server.ext";
  std::ofstream(ext) << "subjectAltName=IP:127.0.0.1,DNS:localhost\n";
  return Run("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=cpn-test-ca -keyout " +
             out->ca_key + " -out " + out->ca_cert) &&
         Run("openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout " + out->server_key +
             " -out " + dir + "/server.csr") &&
         Run("openssl x509 -req -days 2 -in " + dir + "/server.csr -CA " + out->ca_cert +
             " -CAkey " + out->ca_key + " -CAcreateserial -extfile " + ext + " -out " +
             out->server_cert);
}

bool MakeClientCert(const std::string& dir, const TlsFiles& files, const std::string& name,
                    const std::string& common_name, bool trusted, std::string* cert,
                    std::string* key) {
  *cert = dir + "/" + name + ".pem";
  *key = dir + "/" + name + ".key";
  if (!trusted) {
    return Run("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj " + Subject(common_name) +
               " -keyout " + *key + " -out " + *cert);
  }
  return Run("openssl req -newkey rsa:2048 -nodes -subj " + Subject(common_name) + " -keyout " +
             *key + " -out " + dir + "/" + name + ".csr") &&
         Run("openssl x509 -req -days 2 -in " + dir + "/" + name + ".csr -CA " + files.ca_cert +
             " -CAkey " + files.ca_key + " -CAcreateserial -out " + *cert);
}

}  // namespace cpn::testing
