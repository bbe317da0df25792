// OpenSSL's libcrypto, as KeyMM uses it: the EVP cipher interface (AES-XTS, AES-ECB)
// and the CSPRNG for CPU-generated keys (PCONFIG SET_KEY_RANDOM, the boot-time TME key).
#ifndef KEYMM_CLIBCRYPTO_SHIM_H
#define KEYMM_CLIBCRYPTO_SHIM_H
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#endif
