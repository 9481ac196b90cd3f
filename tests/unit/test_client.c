/* The OAuth2 client side (src/client): the encrypted token store (round trip with a
 * passphrase and with a key file, every byte of a sealed file flipped is refused, wrong
 * passphrase, truncations, a key-file store opened with a passphrase), the token answer
 * parser, and the refresh scheduler (no refresh before the lead, a refresh inside it
 * persisted before it is returned, a failed refresh of a still-valid token, single flight
 * across forked processes: one refresh for eight callers). */
#define _GNU_SOURCE /* memmem */
#include "fleetkey/client.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NOW 1800000000LL

static char dir[512];

static void path_of(char *out, size_t size, const char *name) {
    snprintf(out, size, "%s/%s", dir, name);
}

static void tokens_fill(struct fk_client_tokens *t, const char *at, long long exp) {
    memset(t, 0, sizeof *t);
    snprintf(t->access_token, sizeof t->access_token, "%s", at);
    snprintf(t->refresh_token, sizeof t->refresh_token, "rt-%s", at);
    snprintf(t->scope, sizeof t->scope, "fleet:read");
    snprintf(t->client_id, sizeof t->client_id, "phone1");
    t->obtained_at = exp - 86400;
    t->expires_at = exp;
}

static void store_round_trips_with_passphrase_and_key(void **state) {
    (void)state;
    struct fk_client_secret pass, key;
    assert_int_equal(fk_client_secret_from_passphrase("correct horse", 13, &pass), FK_OK);
    memset(&key, 0, sizeof key);
    key.is_key = 1;
    memset(key.key, 0x42, sizeof key.key);
    struct fk_client_tokens t, back;
    tokens_fill(&t, "AT1", NOW);
    const struct fk_client_secret *secs[] = {&pass, &key};
    for (int i = 0; i < 2; i++) {
        uint8_t *buf = NULL, *buf2 = NULL;
        size_t len = 0, len2 = 0;
        assert_int_equal(fk_client_store_seal(secs[i], &t, &buf, &len), FK_OK);
        assert_memory_equal(buf, "FKTS", 4);
        assert_null(memmem(buf, len, "AT1", 3)); /* encrypted */
        assert_int_equal(fk_client_store_open(buf, len, secs[i], &back, NULL), FK_OK);
        assert_string_equal(back.access_token, "AT1");
        assert_string_equal(back.refresh_token, "rt-AT1");
        assert_true(back.expires_at == NOW);
        /* a fresh salt and nonce each time */
        assert_int_equal(fk_client_store_seal(secs[i], &t, &buf2, &len2), FK_OK);
        assert_int_equal(len, len2);
        assert_memory_not_equal(buf + 12, buf2 + 12, 28);
        /* the other kind of secret is told apart before any decryption */
        struct fk_diag d;
        fk_diag_init(&d);
        assert_int_equal(fk_client_store_open(buf, len, secs[1 - i], &back, &d), FK_E_MISMATCH);
        free(buf);
        free(buf2);
    }
    fk_client_secret_wipe(&pass);
}

static void store_refuses_every_modified_byte_and_wrong_passphrase(void **state) {
    (void)state;
    struct fk_client_secret key, wrong;
    memset(&key, 0, sizeof key);
    key.is_key = 1;
    memset(key.key, 7, sizeof key.key);
    wrong = key;
    wrong.key[31] ^= 1;
    struct fk_client_tokens t, back;
    tokens_fill(&t, "AT2", NOW);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(fk_client_store_seal(&key, &t, &buf, &len), FK_OK);
    for (size_t i = 0; i < len; i++) {
        buf[i] ^= 0x01;
        enum fk_err rc = fk_client_store_open(buf, len, &key, &back, NULL);
        assert_int_not_equal(rc, FK_OK);
        buf[i] ^= 0x01;
    }
    struct fk_diag d;
    fk_diag_init(&d);
    assert_int_equal(fk_client_store_open(buf, len, &wrong, &back, &d), FK_E_AUTH);
    assert_non_null(strstr(d.msg, "wrong passphrase or key, or the file was modified"));
    for (size_t cut = 0; cut < len; cut++) {
        assert_int_not_equal(fk_client_store_open(buf, cut, &key, &back, NULL), FK_OK);
    }
    buf[4] = 9;
    assert_int_equal(fk_client_store_open(buf, len, &key, &back, NULL), FK_E_UNSUPPORTED);
    free(buf);
    struct fk_client_secret p1, p2;
    assert_int_equal(fk_client_secret_from_passphrase("one", 3, &p1), FK_OK);
    assert_int_equal(fk_client_secret_from_passphrase("two", 3, &p2), FK_OK);
    assert_int_equal(fk_client_store_seal(&p1, &t, &buf, &len), FK_OK);
    assert_int_equal(fk_client_store_open(buf, len, &p2, &back, NULL), FK_E_AUTH);
    /* scrypt parameters are bounded before use: N = 2^40 is not attempted */
    buf[6] = 40;
    assert_int_equal(fk_client_store_open(buf, len, &p1, &back, NULL), FK_E_PARSE);
    free(buf);
    fk_client_secret_wipe(&p1);
    fk_client_secret_wipe(&p2);
    assert_int_equal(fk_client_secret_from_passphrase("", 0, &p1), FK_E_ARG);
}

static void store_file_is_0600_and_keyfile_rules(void **state) {
    (void)state;
    char p[600], k[600];
    path_of(p, sizeof p, "store");
    path_of(k, sizeof k, "key");
    struct fk_client_secret key;
    memset(&key, 0, sizeof key);
    key.is_key = 1;
    struct fk_client_tokens t, back;
    tokens_fill(&t, "AT3", NOW);
    mode_t old = umask(0);
    assert_int_equal(fk_client_store_write(p, &key, &t, NULL), FK_OK);
    umask(old);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(fk_client_store_read(p, &key, &back, NULL), FK_OK);
    assert_int_equal(fk_client_store_remove(p, NULL), FK_OK);
    assert_int_equal(fk_client_store_read(p, &key, &back, NULL), FK_E_NOTFOUND);
    assert_int_equal(fk_client_store_remove(p, NULL), FK_OK);
    uint8_t raw[32] = {1};
    assert_int_equal(fk_file_write_atomic(k, raw, 32, 0644, 0, NULL), FK_OK);
    struct fk_client_secret ks;
    assert_int_equal(fk_client_secret_from_keyfile(k, &ks, NULL), FK_E_POLICY);
    assert_int_equal(fk_file_write_atomic(k, raw, 31, 0600, 0, NULL), FK_OK);
    assert_int_equal(fk_client_secret_from_keyfile(k, &ks, NULL), FK_E_PARSE);
    assert_int_equal(fk_file_write_atomic(k, raw, 32, 0600, 0, NULL), FK_OK);
    assert_int_equal(fk_client_secret_from_keyfile(k, &ks, NULL), FK_OK);
    assert_true(ks.is_key && ks.key[0] == 1);
    fk_client_secret_wipe(&ks);
}

static void tokens_from_json_checks_each_field(void **state) {
    (void)state;
    struct fk_client_tokens t;
    const char *ok = "{\"access_token\":\"a.b.c\",\"token_type\":\"Bearer\",\"expires_in\":86400,"
                     "\"refresh_token\":\"r\",\"scope\":\"fleet:read\"}";
    assert_int_equal(fk_client_tokens_from_json((const uint8_t *)ok, strlen(ok), NOW, &t, NULL),
                     FK_OK);
    assert_true(t.expires_at == NOW + 86400 && t.obtained_at == NOW);
    assert_string_equal(t.refresh_token, "r");
    const char *bad[] = {
        "{\"access_token\":\"a\",\"token_type\":\"bearer\",\"expires_in\":1}",
        "{\"access_token\":\"a\",\"token_type\":\"Bearer\",\"expires_in\":0}",
        "{\"access_token\":\"\",\"token_type\":\"Bearer\",\"expires_in\":1}",
        "{\"access_token\":\"a\",\"token_type\":\"Bearer\",\"expires_in\":\"1\"}",
        "{\"access_token\":\"a\",\"token_type\":\"Bearer\",\"expires_in\":1,\"refresh_token\":1}",
        "[]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(
            fk_client_tokens_from_json((const uint8_t *)bad[i], strlen(bad[i]), NOW, &t, NULL),
            FK_E_PARSE);
    }
    for (size_t cut = 0; cut < strlen(ok); cut++) {
        assert_int_equal(fk_client_tokens_from_json((const uint8_t *)ok, cut, NOW, &t, NULL),
                         FK_E_PARSE);
    }
}

/* ---- the scheduler ---------------------------------------------------------------------- */

struct fake_server {
    int calls;
    int fail;
    char counter_path[600]; /* across processes: one byte appended per refresh */
};

/* Stands for the token endpoint: hands out a new token valid 24 h from the caller's now. */
static enum fk_err fake_refresh(void *user, const struct fk_client_tokens *old,
                                struct fk_client_tokens *fresh, struct fk_diag *diag) {
    struct fake_server *s = user;
    s->calls++;
    if (s->counter_path[0] != '\0') {
        int fd = open(s->counter_path, O_WRONLY | O_APPEND | O_CREAT, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "x", 1), 1);
        close(fd);
        struct timespec ts = {0, 200 * 1000 * 1000}; /* hold the lock while others arrive */
        nanosleep(&ts, NULL);
    }
    if (s->fail) {
        return fk_diag_set(diag, FK_E_AUTH, "invalid_grant");
    }
    tokens_fill(fresh, "FRESH", old->expires_at + 86400);
    return FK_OK;
}

/* A store NAME in the scratch directory holding a token AT that expires at exp. */
static void store_make(char *p, size_t size, const char *name, struct fk_client_secret *key,
                       const char *at, long long exp) {
    path_of(p, size, name);
    memset(key, 0, sizeof *key);
    key->is_key = 1;
    struct fk_client_tokens t;
    tokens_fill(&t, at, exp);
    assert_int_equal(fk_client_store_write(p, key, &t, NULL), FK_OK);
}

static void token_get_refreshes_only_inside_the_lead(void **state) {
    (void)state;
    char p[600];
    struct fk_client_secret key;
    struct fk_client_tokens out;
    store_make(p, sizeof p, "sched", &key, "OLD", NOW + 86400);
    struct fake_server srv = {0};
    int refreshed = -1;
    long long lead = FK_CLIENT_LEAD_DEFAULT_S;
    /* 1 s before the lead: the stored token */
    assert_int_equal(fk_client_token_get(p, &key, NOW + 86400 - lead - 1, lead, fake_refresh, &srv,
                                         &out, &refreshed, NULL),
                     FK_OK);
    assert_int_equal(srv.calls, 0);
    assert_int_equal(refreshed, 0);
    assert_string_equal(out.access_token, "OLD");
    /* a refresh that fails while the token is still valid: the old one, nothing written */
    srv.fail = 1;
    assert_int_equal(fk_client_token_get(p, &key, NOW + 86400 - lead, lead, fake_refresh, &srv,
                                         &out, &refreshed, NULL),
                     FK_OK);
    assert_int_equal(srv.calls, 1);
    assert_string_equal(out.access_token, "OLD");
    /* expired and the refresh fails: an error */
    assert_int_equal(
        fk_client_token_get(p, &key, NOW + 86400, lead, fake_refresh, &srv, &out, &refreshed, NULL),
        FK_E_STATE);
    /* at the lead: refreshed, and the store holds the new tokens before we get them */
    srv.fail = 0;
    assert_int_equal(fk_client_token_get(p, &key, NOW + 86400 - lead, lead, fake_refresh, &srv,
                                         &out, &refreshed, NULL),
                     FK_OK);
    assert_int_equal(refreshed, 1);
    assert_string_equal(out.access_token, "FRESH");
    struct fk_client_tokens back;
    assert_int_equal(fk_client_store_read(p, &key, &back, NULL), FK_OK);
    assert_string_equal(back.access_token, "FRESH");
    assert_string_equal(back.client_id, "phone1");
}

static void token_get_is_single_flight_across_processes(void **state) {
    (void)state;
    char p[600];
    struct fk_client_secret key;
    store_make(p, sizeof p, "flight", &key, "DUE", NOW + 60);
    struct fake_server srv = {0};
    path_of(srv.counter_path, sizeof srv.counter_path, "flight.count");
    unlink(srv.counter_path);
    pid_t kids[8];
    for (int i = 0; i < 8; i++) {
        kids[i] = fork();
        assert_true(kids[i] >= 0);
        if (kids[i] == 0) {
            struct fk_client_tokens out;
            enum fk_err rc = fk_client_token_get(p, &key, NOW, FK_CLIENT_LEAD_DEFAULT_S,
                                                 fake_refresh, &srv, &out, NULL, NULL);
            _exit(rc == FK_OK && strcmp(out.access_token, "FRESH") == 0 ? 0 : 1);
        }
    }
    for (int i = 0; i < 8; i++) {
        int st = 0;
        assert_int_equal(waitpid(kids[i], &st, 0), kids[i]);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    struct stat sb;
    assert_int_equal(stat(srv.counter_path, &sb), 0);
    assert_int_equal(sb.st_size, 1); /* one refresh for eight processes */
}

static int setup(void **state) {
    (void)state;
    const char *tmp = getenv("FK_TMP");
    snprintf(dir, sizeof dir, "%s", tmp != NULL ? tmp : "/tmp/test_client");
    return fk_mkdirs(dir, 0700, NULL) == FK_OK ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(store_round_trips_with_passphrase_and_key),
        cmocka_unit_test(store_refuses_every_modified_byte_and_wrong_passphrase),
        cmocka_unit_test(store_file_is_0600_and_keyfile_rules),
        cmocka_unit_test(tokens_from_json_checks_each_field),
        cmocka_unit_test(token_get_refreshes_only_inside_the_lead),
        cmocka_unit_test(token_get_is_single_flight_across_processes),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
