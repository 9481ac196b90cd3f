/* Mbed TLS configuration for the freestanding rv32imc compile of device/src (make device-size).
 * It starts from the host's Debian configuration (same features, so the same code paths
 * compile) and removes what a microcontroller build has no OS for: threads, BSD sockets,
 * the timing module, file I/O and OS entropy. The record buffers shrink to what the control
 * protocol needs; this is also the configuration a chip build of fkd_ctl is sized for. */
#ifndef FKD_DEVICE_SIZE_MBEDTLS_H
#define FKD_DEVICE_SIZE_MBEDTLS_H

#include <mbedtls/config.h>

#undef MBEDTLS_THREADING_C
#undef MBEDTLS_THREADING_PTHREAD
#undef MBEDTLS_NET_C
#undef MBEDTLS_TIMING_C
#undef MBEDTLS_FS_IO
#undef MBEDTLS_PSA_ITS_FILE_C
#undef MBEDTLS_PSA_CRYPTO_STORAGE_C
#define MBEDTLS_NO_PLATFORM_ENTROPY
#define MBEDTLS_SSL_IN_CONTENT_LEN 2048
#define MBEDTLS_SSL_OUT_CONTENT_LEN 2048

#endif
