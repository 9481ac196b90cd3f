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
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* The engine is loaded once and stays loaded for the life of the process: libp11 keeps global
 * state (its RSA/EC methods, the module's slots) that it does not free when the engine is
 * unloaded, and a second load would repeat the module's C_Initialize. Each key holds its own
 * functional reference on top of this one. */
static ENGINE *loaded;
static int load_failed;
static pthread_once_t load_once = PTHREAD_ONCE_INIT;

static void load_engine(void) {
    ENGINE_load_builtin_engines();
    ENGINE *e = ENGINE_by_id("pkcs11");
    if (e == NULL) {
        load_failed = 1;
        return;
    }
    const char *module = getenv("FK_PKCS11_MODULE");
    if (module != NULL && module[0] != '\0' &&
        ENGINE_ctrl_cmd_string(e, "MODULE_PATH", module, 0) != 1) {
        ENGINE_free(e);
        load_failed = 2;
        return;
    }
    loaded = e;
}

enum fk_err fk_ota_pkcs11_load(const char *uri, int need_private, EVP_PKEY **pkey, void **engine,
                               struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    ENGINE *e = NULL;
    const char *module = getenv("FK_PKCS11_MODULE");

    *pkey = NULL;
    *engine = NULL;
    FK_ENSURE(pthread_once(&load_once, load_engine) == 0, FK_E_INTERNAL);
    if (loaded == NULL) {
        rc = fk_diag_set(diag, FK_E_UNSUPPORTED,
                         load_failed == 2
                             ? "PKCS#11: the engine refused module %s"
                             : "PKCS#11 key requested but the OpenSSL pkcs11 engine is not "
                               "installed (Debian: libengine-pkcs11-openssl)%s",
                         load_failed == 2 && module != NULL ? module : "");
        goto out;
    }
    const char *pin = getenv("FK_PKCS11_PIN");
    if (pin != NULL && pin[0] != '\0') {
        FK_ENSURE(ENGINE_ctrl_cmd_string(loaded, "PIN", pin, 0) == 1, FK_E_CRYPTO);
    }
    if (ENGINE_init(loaded) != 1) {
        rc = fk_diag_set(diag, FK_E_CRYPTO, "PKCS#11: cannot initialise the engine (module %s)",
                         module != NULL ? module : "default");
        goto out;
    }
    e = loaded; /* a functional reference from here on */
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
        ENGINE_finish(e);
    }
    return rc;
}

void fk_ota_pkcs11_release(void *engine) {
    if (engine != NULL) {
        ENGINE_finish(engine);
    }
}
