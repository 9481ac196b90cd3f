/* PKCS#11 keys through OpenSSL's pkcs11 engine (libp11, Debian package
 * libengine-pkcs11-openssl).
 *
 * Why the engine and not OSSL_STORE with a provider: Debian 12 ships no pkcs11 provider, and
 * release keys belong in an HSM, so the engine is what works on the machines we support. The
 * ENGINE API is deprecated in OpenSSL 3 but present and supported through 3.x; this file is
 * the only place that uses it, so moving to the provider later touches nothing else.
 *
 * The key never leaves the token: EVP_PKEY_sign on the returned key runs the engine's method,
 * which calls C_Sign. Module: FK_PKCS11_MODULE (e.g. /usr/lib/softhsm/libsofthsm2.so), else
 * the engine's default (p11-kit's proxy, which loads every module registered with p11-kit).
 * PIN: "pin-value=" in the URI, or FK_PKCS11_PIN (preferred: argv is visible to other users). */
#define OPENSSL_SUPPRESS_DEPRECATED 1

#include "ota_internal.h"

#include <openssl/engine.h>
#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>

enum fk_err fk_ota_pkcs11_load(const char *uri, int need_private, EVP_PKEY **pkey,
                               void **engine, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    ENGINE *e = NULL;
    int inited = 0;

    *pkey = NULL;
    *engine = NULL;
    ENGINE_load_builtin_engines();
    e = ENGINE_by_id("pkcs11");
    if (e == NULL) {
        rc = fk_diag_set(diag, FK_E_UNSUPPORTED,
                         "PKCS#11 key requested but the OpenSSL pkcs11 engine is not installed "
                         "(Debian: libengine-pkcs11-openssl)");
        goto out;
    }
    const char *module = getenv("FK_PKCS11_MODULE");
    if (module != NULL && module[0] != '\0') {
        FK_ENSURE(ENGINE_ctrl_cmd_string(e, "MODULE_PATH", module, 0) == 1, FK_E_CRYPTO);
    }
    const char *pin = getenv("FK_PKCS11_PIN");
    if (pin != NULL && pin[0] != '\0') {
        FK_ENSURE(ENGINE_ctrl_cmd_string(e, "PIN", pin, 0) == 1, FK_E_CRYPTO);
    }
    if (ENGINE_init(e) != 1) {
        rc = fk_diag_set(diag, FK_E_CRYPTO, "PKCS#11: cannot initialise the engine (module %s)",
                         module != NULL ? module : "default");
        goto out;
    }
    inited = 1;
    *pkey = need_private ? ENGINE_load_private_key(e, uri, NULL, NULL)
                         : ENGINE_load_public_key(e, uri, NULL, NULL);
    if (*pkey == NULL) {
        rc = fk_diag_set(diag, FK_E_NOTFOUND,
                         "PKCS#11: no %s key matches the URI (check token, object/id, PIN)",
                         need_private ? "private" : "public");
        goto out;
    }
    *engine = e;
    e = NULL;
    rc = FK_OK;
out:
    ERR_clear_error();
    if (e != NULL) {
        if (inited) {
            ENGINE_finish(e);
        }
        ENGINE_free(e);
    }
    return rc;
}

void fk_ota_pkcs11_release(void *engine) {
    ENGINE *e = engine;
    if (e != NULL) {
        ENGINE_finish(e);
        ENGINE_free(e);
    }
}
