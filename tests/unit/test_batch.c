/* Unit tests of the batch engine (fleetkey/batch.h) through its library API: the device CSV
 * reports every problem through the callback, and fk_batch_run mints an array of devices
 * given by the caller (no CSV), idempotently, and honours its stop flag. */
#include "fleetkey/batch.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka.h needs the four above first. */
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *tmpdir(const char *sub) {
    static char dir[4096];
    const char *base = getenv("FK_TMP");
    /* A fresh directory per run: a rerun must not find the devices already minted. */
    snprintf(dir, sizeof dir, "%s/%s.%ld", base != NULL ? base : "/tmp/fk_test_batch", sub,
             (long)getpid());
    assert_int_equal(fk_mkdirs(dir, 0700, NULL), FK_OK);
    return dir;
}

struct seen {
    int errors;
    char first[1024];
    int minting;
    int finals;
    size_t files;
    size_t commits;
};

static void on_error(void *user, const struct fk_diag *d) {
    struct seen *s = user;
    if (s->errors++ == 0) {
        fk_diag_format(d, s->first, sizeof s->first);
    }
}

static void on_event(void *user, const struct fk_batch_event *ev) {
    struct seen *s = user;
    switch (ev->kind) {
    case FK_BATCH_EV_MINTING:
        s->minting++;
        break;
    case FK_BATCH_EV_PROGRESS:
        s->finals += ev->final;
        break;
    case FK_BATCH_EV_FILES:
        __atomic_fetch_add(&s->files, 1, __ATOMIC_RELAXED);
        break;
    case FK_BATCH_EV_COMMIT:
        s->commits++;
        break;
    default:
        break;
    }
}

static void batch_csv_reports_every_problem_with_its_line(void **state) {
    (void)state;
    const char csv[] = "mac,name\n02:00:00:00:00:01,a\nzz,b\n02:00:00:00:00:02,c,d\n";
    struct seen s;
    memset(&s, 0, sizeof s);
    struct fk_batch_csv *c = (struct fk_batch_csv *)&s; /* must be set to NULL */
    int errors = -1;
    assert_int_equal(
        fk_batch_csv_parse(csv, sizeof csv - 1, "d.csv", on_error, &s, &c, &errors, NULL), FK_OK);
    assert_int_equal(errors, 2);
    assert_int_equal(s.errors, 2);
    assert_null(c);
    assert_non_null(strstr(s.first, "d.csv:3: mac:"));
}

static void batch_csv_gives_the_devices_in_order(void **state) {
    (void)state;
    const char csv[] = "\xEF\xBB\xBFmac,wifi_ssid,wifi_password\r\n"
                       "02:00:00:00:00:01,net,\"p,w\"\r\n\r\n02-00-00-00-00-02,,\r\n";
    struct fk_batch_csv *c = NULL;
    int errors = -1;
    assert_int_equal(
        fk_batch_csv_parse(csv, sizeof csv - 1, "d.csv", NULL, NULL, &c, &errors, NULL), FK_OK);
    assert_int_equal(errors, 0);
    size_t n = 0;
    const struct fk_batch_device *d = fk_batch_csv_devices(c, &n);
    assert_int_equal(n, 2);
    assert_string_equal(d[0].id, "robot-020000000001");
    assert_string_equal(d[0].ssid, "net");
    assert_string_equal(d[0].pass, "p,w");
    assert_int_equal(d[1].line, 4);
    assert_null(d[1].ssid);
    fk_batch_csv_free(c);
}

/* n devices with MACs 02:00:00:00:BYTE:01.. and no Wi-Fi. */
static void make_devices(struct fk_batch_device *devs, int n, uint8_t byte) {
    memset(devs, 0, (size_t)n * sizeof *devs);
    for (int i = 0; i < n; i++) {
        uint8_t mac[FK_MAC_LEN] = {0x02, 0, 0, 0, byte, (uint8_t)(i + 1)};
        memcpy(devs[i].mac, mac, sizeof mac);
        fk_keys_device_id(mac, devs[i].id);
        devs[i].pass = "";
    }
}

static void batch_run_mints_an_array_once(void **state) {
    (void)state;
    struct fk_batch_device devs[3];
    make_devices(devs, 3, 0x10);
    struct seen s;
    memset(&s, 0, sizeof s);
    struct fk_batch_opts o = {.output_dir = tmpdir("array"),
                              .jobs = 2,
                              .chunk = 2,
                              .actor = "test_batch",
                              .on_event = on_event,
                              .user = &s};
    struct fk_batch_result res;
    struct fk_diag d;
    fk_diag_init(&d);
    assert_int_equal(fk_batch_run(&o, devs, 3, &res, &d), FK_OK);
    assert_true(res.complete);
    assert_int_equal(res.minted, 3);
    assert_int_equal(res.skipped, 0);
    assert_true(res.ota_key_created);
    assert_non_null(strstr(res.inventory_path, "inventory.db"));
    assert_int_equal(s.minting, 1);
    assert_int_equal(s.finals, 1);
    assert_int_equal(s.files, 3);
    assert_int_equal(s.commits, 2);
    fk_batch_result_clear(&res);

    /* Again: nothing is minted twice, the fleet key is reused. */
    assert_int_equal(fk_batch_run(&o, devs, 3, &res, &d), FK_OK);
    assert_true(res.complete);
    assert_int_equal(res.minted, 0);
    assert_int_equal(res.skipped, 3);
    assert_false(res.ota_key_created);
    fk_batch_result_clear(&res);
}

static void plant(const char *dir, const char *id, const char *suffix) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s%s", dir, id, suffix);
    assert_int_equal(fk_file_write_atomic(path, "stale", 5, 0600, FK_WRITE_NOSYNC, NULL), FK_OK);
}

static int exists(const char *dir, const char *id, const char *suffix) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s%s", dir, id, suffix);
    return access(path, F_OK) == 0;
}

/* The optional files a device minted now will not have (per-device key, certificate without
 * --ca, NVS keys without encryption) are removed before it is minted, also when they come
 * from another run; a complete device's files are never touched, nor another name's. */
static void batch_run_removes_stale_files_of_pending_devices_only(void **state) {
    (void)state;
    struct fk_batch_device devs[2];
    make_devices(devs, 2, 0x30);
    struct fk_batch_opts o = {.output_dir = tmpdir("stale"), .jobs = 2, .actor = "test_batch"};
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", o.output_dir);
    struct fk_batch_result res;
    assert_int_equal(fk_batch_run(&o, devs, 1, &res, NULL), FK_OK); /* devs[0] complete */
    fk_batch_result_clear(&res);
    plant(dir, devs[0].id, ".crt.pem");
    plant(dir, devs[1].id, ".key.pem");
    plant(dir, devs[1].id, ".crt.pem");
    plant(dir, devs[1].id, ".nvs_keys.bin");
    plant(dir, "robot-notadevice", ".key.pem");
    assert_int_equal(fk_batch_run(&o, devs, 2, &res, NULL), FK_OK);
    assert_int_equal(res.minted, 1);
    assert_int_equal(res.skipped, 1);
    fk_batch_result_clear(&res);
    assert_false(exists(dir, devs[1].id, ".key.pem"));
    assert_false(exists(dir, devs[1].id, ".crt.pem"));
    assert_false(exists(dir, devs[1].id, ".nvs_keys.bin"));
    assert_true(exists(dir, devs[1].id, ".nvs.bin"));
    assert_true(exists(dir, devs[1].id, ".json"));
    assert_true(exists(dir, devs[0].id, ".crt.pem"));
    assert_true(exists(dir, "robot-notadevice", ".key.pem"));
}

static void batch_run_stops_before_a_chunk_when_asked(void **state) {
    (void)state;
    struct fk_batch_device dev;
    memset(&dev, 0, sizeof dev);
    uint8_t mac[FK_MAC_LEN] = {0x02, 0, 0, 0, 0x20, 1};
    memcpy(dev.mac, mac, sizeof mac);
    fk_keys_device_id(mac, dev.id);
    dev.pass = "";
    volatile sig_atomic_t stop = 1;
    struct fk_batch_opts o = {.output_dir = tmpdir("stop"), .jobs = 1, .stop = &stop};
    struct fk_batch_result res;
    assert_int_equal(fk_batch_run(&o, &dev, 1, &res, NULL), FK_OK);
    assert_false(res.complete);
    assert_int_equal(res.minted, 0);
    fk_batch_result_clear(&res);
}

static void batch_run_refuses_bad_options(void **state) {
    (void)state;
    struct fk_batch_opts o = {.output_dir = NULL};
    struct fk_batch_result res;
    assert_int_equal(fk_batch_run(&o, NULL, 0, &res, NULL), FK_E_ARG);
    fk_batch_result_clear(&res);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(batch_csv_reports_every_problem_with_its_line),
        cmocka_unit_test(batch_csv_gives_the_devices_in_order),
        cmocka_unit_test(batch_run_mints_an_array_once),
        cmocka_unit_test(batch_run_removes_stale_files_of_pending_devices_only),
        cmocka_unit_test(batch_run_stops_before_a_chunk_when_asked),
        cmocka_unit_test(batch_run_refuses_bad_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
