/* The refresh scheduler (fleetkey/client.h).
 *
 * Single flight across processes: the store is only ever refreshed by the holder of an
 * exclusive flock on "<store>.lock". Twenty `fleetctl token` started at once all find the
 * token due; one takes the lock and refreshes, the others wait, then read the store again
 * and find the fresh token there, so the server sees one refresh (a second refresh with the
 * already-rotated refresh token would count as reuse and revoke the family). The new tokens
 * reach the store (fsync'ed, renamed) before the lock is released and before the caller gets
 * them: a crash after the server rotated loses nothing the client will need. */
#include "fleetkey/client.h"

#include <cjson/cJSON.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

static int due(const struct fk_client_tokens *t, long long now, long long lead) {
    return t->expires_at - now <= lead;
}

/* Takes the exclusive lock on path.lock, polling so the wait is bounded. */
static enum fk_err lock_take(const char *path, int *fd_out, struct fk_diag *diag) {
    char lock[1100];
    snprintf(lock, sizeof lock, "%.1000s.lock", path);
    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        return fk_diag_at(diag, FK_E_IO, lock, 0, "%s", strerror(errno));
    }
    for (long waited_ms = 0;; waited_ms += 20) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
            *fd_out = fd;
            return FK_OK;
        }
        if (errno != EWOULDBLOCK && errno != EINTR) {
            int e = errno;
            close(fd);
            return fk_diag_at(diag, FK_E_IO, lock, 0, "flock: %s", strerror(e));
        }
        if (waited_ms >= FK_CLIENT_LOCK_WAIT_S * 1000L) {
            close(fd);
            return fk_diag_at(diag, FK_E_TIMEOUT, lock, 0,
                              "another process held the refresh lock for %d s",
                              FK_CLIENT_LOCK_WAIT_S);
        }
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

enum fk_err fk_client_token_get(const char *path, const struct fk_client_secret *s, long long now,
                                long long lead, fk_client_refresh_fn *refresh, void *user,
                                struct fk_client_tokens *out, int *refreshed,
                                struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    int fd = -1;
    struct fk_client_tokens *cur = calloc(1, sizeof *cur);
    struct fk_client_tokens *fresh = calloc(1, sizeof *fresh);
    if (refreshed != NULL) {
        *refreshed = 0;
    }
    FK_ENSURE(cur != NULL && fresh != NULL, FK_E_NOMEM);
    FK_GUARD(fk_client_store_read(path, s, cur, diag));
    if (!due(cur, now, lead)) {
        *out = *cur;
        rc = FK_OK;
        goto out;
    }
    FK_GUARD(lock_take(path, &fd, diag));
    /* Another process may have refreshed while we waited: its token is the one to use. */
    FK_GUARD(fk_client_store_read(path, s, cur, diag));
    if (!due(cur, now, lead)) {
        *out = *cur;
        rc = FK_OK;
        goto out;
    }
    FK_ENSURE(cur->refresh_token[0] != '\0',
              fk_diag_set(diag, FK_E_STATE, "no refresh token stored: log in again"));
    struct fk_diag rd;
    fk_diag_init(&rd);
    rc = refresh(user, cur, fresh, &rd);
    if (rc != FK_OK) {
        char fpr[FK_FPR_LEN];
        if (cur->expires_at > now) {
            fk_log(FK_LOG_WARN,
                   "client: refresh of token %s failed (%s); using it until it "
                   "expires in %lld s",
                   fk_fpr(cur->access_token, strlen(cur->access_token), fpr), rd.msg,
                   cur->expires_at - now);
            *out = *cur;
            rc = FK_OK;
            goto out;
        }
        rc = fk_diag_set(diag, FK_E_STATE, "token expired and refresh failed: %.400s", rd.msg);
        goto out;
    }
    if (fresh->client_id[0] == '\0') {
        memcpy(fresh->client_id, cur->client_id, sizeof fresh->client_id);
    }
    /* Persisted before use: the old refresh token is spent at the server now. */
    FK_GUARD(fk_client_store_write(path, s, fresh, diag));
    *out = *fresh;
    if (refreshed != NULL) {
        *refreshed = 1;
    }
    rc = FK_OK;
out:
    if (fd >= 0) {
        close(fd); /* releases the flock */
    }
    fk_free_secret(cur, sizeof *cur);
    fk_free_secret(fresh, sizeof *fresh);
    return rc;
}

enum fk_err fk_client_tokens_from_json(const uint8_t *buf, size_t len, long long now,
                                       struct fk_client_tokens *t, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    cJSON *o = NULL;
    FK_ENSURE(len <= FK_CLIENT_STORE_MAX,
              fk_diag_set(diag, FK_E_TOOBIG, "token answer of %zu bytes", len));
    o = cJSON_ParseWithLength((const char *)buf, len);
    FK_ENSURE(cJSON_IsObject(o), fk_diag_set(diag, FK_E_PARSE, "token answer is not JSON"));
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(o, "access_token");
    const cJSON *rt = cJSON_GetObjectItemCaseSensitive(o, "refresh_token");
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(o, "token_type");
    const cJSON *ex = cJSON_GetObjectItemCaseSensitive(o, "expires_in");
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(o, "scope");
    FK_ENSURE(cJSON_IsString(at) && at->valuestring[0] != '\0' &&
                  strlen(at->valuestring) < sizeof t->access_token,
              fk_diag_set(diag, FK_E_PARSE, "access_token: missing or longer than %u bytes",
                          FK_OAUTH_TOKEN_MAX));
    FK_ENSURE(cJSON_IsString(ty) && strcmp(ty->valuestring, "Bearer") == 0,
              fk_diag_set(diag, FK_E_PARSE, "token_type: expected Bearer"));
    FK_ENSURE(cJSON_IsNumber(ex) && ex->valuedouble >= 1 && ex->valuedouble <= 366 * 86400.0,
              fk_diag_set(diag, FK_E_PARSE, "expires_in: expected 1..31622400 seconds"));
    FK_ENSURE(rt == NULL ||
                  (cJSON_IsString(rt) && strlen(rt->valuestring) < sizeof t->refresh_token),
              fk_diag_set(diag, FK_E_PARSE, "refresh_token: longer than %d bytes",
                          FK_CLIENT_REFRESH_MAX));
    FK_ENSURE(sc == NULL || (cJSON_IsString(sc) && strlen(sc->valuestring) < sizeof t->scope),
              fk_diag_set(diag, FK_E_PARSE, "scope: too long"));
    memset(t, 0, sizeof *t);
    memcpy(t->access_token, at->valuestring, strlen(at->valuestring) + 1);
    if (rt != NULL) {
        memcpy(t->refresh_token, rt->valuestring, strlen(rt->valuestring) + 1);
    }
    if (sc != NULL) {
        memcpy(t->scope, sc->valuestring, strlen(sc->valuestring) + 1);
    }
    t->obtained_at = now;
    t->expires_at = now + (long long)ex->valuedouble;
    rc = FK_OK;
out:
    cJSON_Delete(o);
    return rc;
}
