#ifndef GENETIKA_CLIBCRYPTO_SHIM_H
#define GENETIKA_CLIBCRYPTO_SHIM_H
#include <openssl/evp.h>
#endif
