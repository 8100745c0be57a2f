// Sealed cache entries: see seal.h.
#include "seal.h"

#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace dc::seal {
namespace {

constexpr size_t kNonceSize = 12;
constexpr size_t kFixedHeader = 1 + kKeyIdSize + kSaltSize + 8 + 1;  // 30
constexpr size_t kMaxKeyringFile = 64 * 1024;
constexpr char kInfo[] = "distcache seal v1";
constexpr char kKeyIdLabel[] = "distcache key id";

struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
struct KdfCtxFree {
  void operator()(EVP_KDF_CTX* c) const { EVP_KDF_CTX_free(c); }
};

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool key_id(const std::array<uint8_t, kKeySize>& key, std::array<uint8_t, kKeyIdSize>& id) {
  uint8_t md[EVP_MAX_MD_SIZE];
  unsigned md_len = 0;
  std::vector<uint8_t> in(kKeyIdLabel, kKeyIdLabel + sizeof kKeyIdLabel - 1);
  in.insert(in.end(), key.begin(), key.end());
  if (!EVP_Digest(in.data(), in.size(), md, &md_len, EVP_sha256(), nullptr)) return false;
  std::memcpy(id.data(), md, kKeyIdSize);
  return true;
}

// The entry's AES key and nonce: HKDF-SHA256(key, salt, info).
bool derive(const Key& k, const uint8_t* salt, uint8_t out[kKeySize + kNonceSize]) {
  EVP_KDF* kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  if (kdf == nullptr) return false;
  std::unique_ptr<EVP_KDF_CTX, KdfCtxFree> ctx(EVP_KDF_CTX_new(kdf));
  EVP_KDF_free(kdf);
  if (!ctx) return false;
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<uint8_t*>(k.bytes.data()),
                                        k.bytes.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, const_cast<uint8_t*>(salt), kSaltSize),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, const_cast<char*>(kInfo),
                                        sizeof kInfo - 1),
      OSSL_PARAM_construct_end(),
  };
  return EVP_KDF_derive(ctx.get(), out, kKeySize + kNonceSize, params) == 1;
}

// Associated data: the header, then the session id with its length.
std::vector<uint8_t> associated(Bytes header, Bytes id) {
  std::vector<uint8_t> ad(header.begin(), header.end());
  ad.push_back(uint8_t(id.size()));
  ad.insert(ad.end(), id.begin(), id.end());
  return ad;
}

}  // namespace

const char* to_string(OpenError e) {
  switch (e) {
    case OpenError::none:
      return "ok";
    case OpenError::too_short:
      return "too short to be a sealed entry";
    case OpenError::not_sealed:
      return "not a sealed entry (stored in the clear, or by another version)";
    case OpenError::unknown_key:
      return "sealed with a key that is not in the keyring";
    case OpenError::expired:
      return "expired";
    case OpenError::bad_header:
      return "malformed header";
    case OpenError::forged:
      return "does not authenticate (tampered, moved to another id, or another keyring)";
    case OpenError::crypto:
      return "OpenSSL failed";
  }
  return "?";
}

bool parse_keyring(std::string_view text, Keyring& out, std::string& err) {
  Keyring kr;
  size_t line_no = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++line_no;
    while (!line.empty() && std::strchr(" \t\r", line.front())) line.remove_prefix(1);
    while (!line.empty() && std::strchr(" \t\r", line.back())) line.remove_suffix(1);
    if (line.empty() || line.front() == '#') continue;
    if (line.size() != 2 * kKeySize) {
      err = "line " + std::to_string(line_no) + " is not a key of 64 hex digits (it has " +
            std::to_string(line.size()) + " characters); make one with: openssl rand -hex 32";
      return false;
    }
    Key k;
    for (size_t i = 0; i < kKeySize; ++i) {
      int hi = hex_value(line[2 * i]), lo = hex_value(line[2 * i + 1]);
      if (hi < 0 || lo < 0) {
        err = "line " + std::to_string(line_no) + " has a character that is not a hex digit";
        return false;
      }
      k.bytes[i] = uint8_t(hi << 4 | lo);
    }
    if (!key_id(k.bytes, k.id)) {
      err = "OpenSSL could not compute a key id";
      return false;
    }
    kr.keys.push_back(k);
  }
  if (kr.keys.empty()) {
    err = "no key in it (one per line, 64 hex digits; make one with: openssl rand -hex 32)";
    return false;
  }
  out = std::move(kr);
  return true;
}

bool load_keyring(const std::string& path, Keyring& out, std::string& err) {
  auto fail = [&](const std::string& why) {
    err = "keyring " + path + ": " + why;
    return false;
  };
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return fail(std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    return fail(std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return fail("not a regular file");
  }
  if ((st.st_mode & 077) != 0) {
    ::close(fd);
    return fail("group or others may access it (mode " + std::to_string((st.st_mode >> 6) & 7) +
                std::to_string((st.st_mode >> 3) & 7) + std::to_string(st.st_mode & 7) +
                "); make it readable by its owner only: chmod 600 " + path);
  }
  if (st.st_size > off_t(kMaxKeyringFile)) {
    ::close(fd);
    return fail("larger than 64 KiB: not a keyring");
  }
  std::string text(size_t(st.st_size), '\0');
  size_t got = 0;
  while (got < text.size()) {
    ssize_t n = ::read(fd, text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += size_t(n);
  }
  ::close(fd);
  text.resize(got);
  std::string why;
  if (!parse_keyring(text, out, why)) return fail(why);
  return true;
}

bool seal(const Keyring& kr, Bytes id, Bytes sid_ctx, int64_t expiry, Bytes session,
          std::vector<uint8_t>& out) {
  if (kr.keys.empty() || sid_ctx.size() > kMaxSidCtx || id.size() > 255) return false;
  const Key& k = kr.keys.front();
  std::vector<uint8_t> header(kFixedHeader + sid_ctx.size());
  uint8_t* h = header.data();
  h[0] = kVersion;
  std::memcpy(h + 1, k.id.data(), kKeyIdSize);
  if (RAND_bytes(h + 5, int(kSaltSize)) != 1) return false;
  for (int i = 0; i < 8; ++i) h[21 + i] = uint8_t(uint64_t(expiry) >> (56 - 8 * i));
  h[29] = uint8_t(sid_ctx.size());
  if (!sid_ctx.empty()) std::memcpy(h + 30, sid_ctx.data(), sid_ctx.size());

  uint8_t kn[kKeySize + kNonceSize];
  if (!derive(k, h + 5, kn)) return false;
  std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree> c(EVP_CIPHER_CTX_new());
  std::vector<uint8_t> ad = associated(header, id);
  size_t start = out.size();
  out.insert(out.end(), header.begin(), header.end());
  out.resize(start + header.size() + session.size() + kTagSize);
  uint8_t* ct = out.data() + start + header.size();
  int len = 0, fin = 0;
  bool ok =
      c && EVP_EncryptInit_ex(c.get(), EVP_aes_256_gcm(), nullptr, kn, kn + kKeySize) == 1 &&
      EVP_EncryptUpdate(c.get(), nullptr, &len, ad.data(), int(ad.size())) == 1 &&
      EVP_EncryptUpdate(c.get(), ct, &len, session.data(), int(session.size())) == 1 &&
      EVP_EncryptFinal_ex(c.get(), ct + len, &fin) == 1 && size_t(len + fin) == session.size() &&
      EVP_CIPHER_CTX_ctrl(c.get(), EVP_CTRL_GCM_GET_TAG, int(kTagSize), ct + session.size()) == 1;
  OPENSSL_cleanse(kn, sizeof kn);
  if (!ok) out.resize(start);
  return ok;
}

OpenError open(const Keyring& kr, Bytes id, int64_t now, Bytes entry, std::vector<uint8_t>& session,
               std::vector<uint8_t>& sid_ctx) {
  if (entry.size() < kFixedHeader + kTagSize) return OpenError::too_short;
  if (entry[0] != kVersion) return OpenError::not_sealed;
  size_t ctx_len = entry[29];
  if (ctx_len > kMaxSidCtx) return OpenError::bad_header;
  size_t header_len = kFixedHeader + ctx_len;
  if (entry.size() < header_len + kTagSize) return OpenError::too_short;
  const Key* k = nullptr;
  for (const Key& candidate : kr.keys) {
    if (std::memcmp(candidate.id.data(), entry.data() + 1, kKeyIdSize) == 0) {
      k = &candidate;
      break;
    }
  }
  if (k == nullptr) return OpenError::unknown_key;
  uint64_t expiry = 0;
  for (int i = 0; i < 8; ++i) expiry = expiry << 8 | entry[21 + i];
  // The header is not authenticated yet: a forged expiry only makes this
  // a miss a little earlier than the tag check would.
  if (int64_t(expiry) <= now) return OpenError::expired;

  Bytes header = entry.first(header_len);
  size_t ct_len = entry.size() - header_len - kTagSize;
  Bytes ct = entry.subspan(header_len, ct_len);
  Bytes tag = entry.last(kTagSize);
  uint8_t kn[kKeySize + kNonceSize];
  if (!derive(*k, entry.data() + 5, kn)) return OpenError::crypto;
  std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree> c(EVP_CIPHER_CTX_new());
  std::vector<uint8_t> ad = associated(header, id);
  std::vector<uint8_t> plain(ct_len);
  int len = 0, fin = 0;
  bool setup = c &&
               EVP_DecryptInit_ex(c.get(), EVP_aes_256_gcm(), nullptr, kn, kn + kKeySize) == 1 &&
               EVP_DecryptUpdate(c.get(), nullptr, &len, ad.data(), int(ad.size())) == 1 &&
               EVP_DecryptUpdate(c.get(), plain.data(), &len, ct.data(), int(ct.size())) == 1 &&
               EVP_CIPHER_CTX_ctrl(c.get(), EVP_CTRL_GCM_SET_TAG, int(kTagSize),
                                   const_cast<uint8_t*>(tag.data())) == 1;
  OPENSSL_cleanse(kn, sizeof kn);
  if (!setup) return OpenError::crypto;
  if (EVP_DecryptFinal_ex(c.get(), plain.data() + len, &fin) != 1) {
    OPENSSL_cleanse(plain.data(), plain.size());
    return OpenError::forged;
  }
  session = std::move(plain);
  sid_ctx.assign(header.begin() + kFixedHeader, header.end());
  return OpenError::none;
}

}  // namespace dc::seal
