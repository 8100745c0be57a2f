// Shared ticket keys, the pure parts: see tickets.h.
#include "tickets.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#include <cstring>
#include <memory>

namespace dc::tickets {

std::string reserved_id(int64_t epoch, int64_t epoch_s) {
  // The epoch length is part of the name: processes configured with
  // different epochs never read each other's secrets as their own.
  return "dc-ticket-key/" + std::to_string(epoch_s) + "/" + std::to_string(epoch);
}

bool derive(Key& k, int64_t epoch_s) {
  uint8_t info[19 + 16];
  std::memcpy(info, "distcache ticket v1", 19);
  for (int i = 0; i < 8; ++i) {
    info[19 + i] = uint8_t(uint64_t(k.epoch) >> (56 - 8 * i));
    info[27 + i] = uint8_t(uint64_t(epoch_s) >> (56 - 8 * i));
  }
  EVP_KDF* kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  if (kdf == nullptr) return false;
  EVP_KDF_CTX* ctx = EVP_KDF_CTX_new(kdf);
  EVP_KDF_free(kdf);
  if (ctx == nullptr) return false;
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, k.secret.data(), k.secret.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, sizeof info),
      OSSL_PARAM_construct_end(),
  };
  uint8_t out[kNameSize + 32 + 32];
  bool ok = EVP_KDF_derive(ctx, out, sizeof out, params) == 1;
  EVP_KDF_CTX_free(ctx);
  if (!ok) return false;
  std::memcpy(k.name.data(), out, kNameSize);
  std::memcpy(k.aes.data(), out + kNameSize, 32);
  std::memcpy(k.hmac.data(), out + kNameSize + 32, 32);
  OPENSSL_cleanse(out, sizeof out);
  return true;
}

}  // namespace dc::tickets
