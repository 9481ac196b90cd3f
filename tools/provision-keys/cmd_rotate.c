/* provision-keys rotate ota-key: the OTA signing-key rotation planner (fleetkey/rotation.h,
 * docs/ota-updates.md). Parses arguments, calls the rotation library, prints the devices that
 * block a refused step, maps the result to an exit code: 0 done, 1 refused or failed, 2 bad
 * command line. */
#include "cli.h"
#include "fleetkey/inventory.h"
#include "fleetkey/ota.h"
#include "fleetkey/rotation.h"

#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IMAGE_MAX (16u * 1024u * 1024u + 8192u)

static const char rotate_help[] =
    "usage: provision-keys rotate ota-key --inventory DB --old-key OLD --new-key NEW STEP ...\n"
    "\n"
    "Plans and drives the rotation of the OTA (firmware) signing key, seed 004's steps, with\n"
    "the inventory as the gate. Keys: PEM files or pkcs11: URIs (private keys where a step\n"
    "signs). STEP:\n"
    "  start                      record NEW as a trusted OTA key of every device (staged),\n"
    "                             with OLD's endorsement of it (OLD must be the private\n"
    "                             key: devices accept NEW over the channel only so signed)\n"
    "  status                     per device: holds the new key? confirmed? runs new-only\n"
    "                             firmware? last seen\n"
    "  confirm --device ID [--firmware]\n"
    "                             the device holds and trusts ota_pubkey2 (what the server\n"
    "                             records when the device reports it); --firmware: it runs\n"
    "                             firmware signed with the new key only\n"
    "  sign-release [--new-only] --output OUT IMAGE\n"
    "                             sign an app image with OLD + NEW (dual, the transition);\n"
    "                             --new-only only once every device confirmed the new key\n"
    "  retire-old                 mark OLD retired (every device confirmed and runs new-key-\n"
    "                             only firmware); `provision-keys sign --inventory DB` then\n"
    "                             refuses to sign with it\n"
    "A step whose gate does not hold is refused (exit 1) with the devices that block it,\n"
    "offline ones included. Every step and every refusal is in the audit log.\n";

struct rargs {
    const char *inventory, *old_key, *new_key, *device, *output, *image, *step;
    int firmware, new_only;
};

static int parse(int argc, char **argv, struct rargs *a) {
    memset(a, 0, sizeof *a);
    int words = 0;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) {
            fputs(rotate_help, stdout);
            return -1;
        }
        if (strcmp(s, "--firmware") == 0) {
            a->firmware = 1;
            continue;
        }
        if (strcmp(s, "--new-only") == 0) {
            a->new_only = 1;
            continue;
        }
        const char **slot = NULL;
        if (strcmp(s, "--inventory") == 0) {
            slot = &a->inventory;
        } else if (strcmp(s, "--old-key") == 0) {
            slot = &a->old_key;
        } else if (strcmp(s, "--new-key") == 0) {
            slot = &a->new_key;
        } else if (strcmp(s, "--device") == 0) {
            slot = &a->device;
        } else if (strcmp(s, "--output") == 0) {
            slot = &a->output;
        }
        if (slot != NULL) {
            if (i + 1 >= argc) {
                return fk_cli_usage_error("rotate", "%s needs a value", s);
            }
            *slot = argv[++i];
            continue;
        }
        if (s[0] == '-') {
            return fk_cli_usage_error("rotate", "unknown option '%s'", s);
        }
        if (words == 0) {
            if (strcmp(s, "ota-key") != 0) {
                return fk_cli_usage_error("rotate", "'%s': only 'ota-key' rotations exist", s);
            }
        } else if (words == 1) {
            a->step = s;
        } else if (words == 2 && a->image == NULL) {
            a->image = s;
        } else {
            return fk_cli_usage_error("rotate", "unexpected argument '%s'", s);
        }
        words++;
    }
    if (a->step == NULL) {
        return fk_cli_usage_error("rotate", "expected: rotate ota-key ... STEP");
    }
    if (a->inventory == NULL || a->old_key == NULL || a->new_key == NULL) {
        return fk_cli_usage_error("rotate", "--inventory, --old-key and --new-key are required");
    }
    int is_sign = strcmp(a->step, "sign-release") == 0;
    if (strcmp(a->step, "start") != 0 && strcmp(a->step, "status") != 0 &&
        strcmp(a->step, "confirm") != 0 && !is_sign && strcmp(a->step, "retire-old") != 0) {
        return fk_cli_usage_error("rotate", "unknown step '%s'", a->step);
    }
    if (strcmp(a->step, "confirm") == 0 && a->device == NULL) {
        return fk_cli_usage_error("rotate", "confirm needs --device ID");
    }
    if (is_sign && (a->image == NULL || a->output == NULL)) {
        return fk_cli_usage_error("rotate", "sign-release needs --output OUT and an IMAGE");
    }
    if (!is_sign && (a->image != NULL || a->new_only || a->output != NULL)) {
        return fk_cli_usage_error("rotate", "IMAGE, --output and --new-only go with "
                                            "sign-release");
    }
    if (a->firmware && strcmp(a->step, "confirm") != 0) {
        return fk_cli_usage_error("rotate", "--firmware goes with confirm");
    }
    return 0;
}

/* Prints each device that fails the gate, with when the control plane last saw it. */
static void print_blockers(const struct fk_rot_status *st, int firmware) {
    char seen[64];
    for (size_t i = 0; i < st->n; i++) {
        const struct fk_rot_device *d = &st->dev[i];
        int ok = firmware ? d->runs_new_only : d->confirmed;
        if (!ok) {
            fprintf(stderr, "  blocking: %s (%s; %s)\n", d->id,
                    !d->confirmed ? "new key not confirmed" : "new-key-only firmware not confirmed",
                    fk_rot_seen_text(d, seen, sizeof seen));
        }
    }
}

static int print_status(const struct fk_rot_status *st, const struct fk_rot_keys *k) {
    char seen[64];
    printf("rotation ota-key: old %s, new %s\n", k->old_fpr, k->new_fpr);
    printf("started: %s; old key: %s; new-key-only release: %s\n", st->started ? "yes" : "no",
           st->old_retired ? "retired" : "trusted", st->new_only_release ? "signed" : "none");
    printf("devices: %zu; new key confirmed: %zu/%zu; new-key-only firmware: %zu/%zu\n", st->n,
           st->confirmed, st->n, st->runs_new_only, st->n);
    for (size_t i = 0; i < st->n; i++) {
        const struct fk_rot_device *d = &st->dev[i];
        printf("%s: new key %s; firmware %s; %s\n", d->id,
               d->confirmed   ? "confirmed"
               : d->holds_new ? "staged (not confirmed)"
                              : "absent",
               d->runs_new_only ? "new-key-only" : "-", fk_rot_seen_text(d, seen, sizeof seen));
    }
    const char *next = !st->started            ? "start"
                       : st->old_retired       ? "done"
                       : st->confirmed < st->n ? "confirm every device (releases stay dual-signed)"
                       : !st->new_only_release ? "sign-release --new-only"
                       : st->runs_new_only < st->n ? "confirm --firmware on every device"
                                                   : "retire-old";
    printf("next: %s\n", next);
    return FK_EXIT_OK;
}

static int sign_release(struct fk_inventory *inv, const struct rargs *a,
                        const struct fk_rot_keys *k, struct fk_ota_key *oldk,
                        struct fk_ota_key *newk) {
    struct fk_diag d;
    struct fk_rot_status st;
    uint8_t *in = NULL;
    uint8_t *out = NULL;
    size_t in_len = 0, out_len = 0;
    int ret = FK_EXIT_FAIL;
    fk_diag_init(&d);
    memset(&st, 0, sizeof st);
    enum fk_err rc = fk_rotation_gate_release(inv, k, a->new_only, "provision-keys", &st, &d);
    if (rc != FK_OK) {
        fk_cli_fail(&d, rc);
        if (a->new_only) {
            print_blockers(&st, 0);
        }
        goto out;
    }
    rc = fk_file_read(a->image, IMAGE_MAX, &in, &in_len, &d);
    if (rc != FK_OK) {
        ret = fk_cli_fail(&d, rc);
        goto out;
    }
    struct fk_ota_image im;
    rc = fk_ota_image_parse(in, in_len, &im, &d);
    if (rc != FK_OK) {
        snprintf(d.file, sizeof d.file, "%s", a->image);
        ret = fk_cli_fail(&d, rc);
        goto out;
    }
    struct fk_ota_key *keys[2] = {oldk, newk};
    size_t nkeys = 2;
    if (a->new_only) {
        keys[0] = newk;
        nkeys = 1;
    }
    size_t cap = fk_ota_signed_size(in_len);
    out = malloc(cap ? cap : 1);
    if (out == NULL) {
        ret = fk_cli_fail(NULL, FK_E_NOMEM);
        goto out;
    }
    rc = fk_ota_sign(in, in_len, keys, nkeys, out, cap, &out_len, &d);
    if (rc == FK_OK) {
        rc = fk_file_write_atomic(a->output, out, out_len, 0644, 0, &d);
    }
    if (rc != FK_OK) {
        ret = fk_cli_fail(&d, rc);
        goto out;
    }
    uint8_t h[SHA256_DIGEST_LENGTH];
    char hex[2 * SHA256_DIGEST_LENGTH + 1];
    SHA256(out, out_len, h);
    if (fk_hex_encode(h, sizeof h, hex, sizeof hex) != FK_OK) {
        hex[0] = '\0';
    }
    rc = fk_rotation_record_release(inv, k, a->new_only, a->output, hex, "provision-keys", &d);
    if (rc != FK_OK) {
        ret = fk_cli_fail(&d, rc);
        goto out;
    }
    printf("%s: %s %s signed with %s (sha256 %s)\n", a->output, im.app_desc.project_name,
           im.app_desc.version, a->new_only ? "the new key only" : "the old and the new key", hex);
    ret = FK_EXIT_OK;
out:
    fk_rot_status_free(&st);
    free(in);
    free(out);
    return ret;
}

int fk_cmd_rotate(int argc, char **argv) {
    struct rargs a;
    struct fk_diag d;
    struct fk_inventory *inv = NULL;
    struct fk_ota_key *oldk = NULL, *newk = NULL;
    struct fk_rot_keys k;
    struct fk_rot_status st;
    int ret = parse(argc, argv, &a);
    if (ret != 0) {
        return ret < 0 ? FK_EXIT_OK : ret;
    }
    fk_diag_init(&d);
    memset(&st, 0, sizeof st);
    memset(&k, 0, sizeof k);
    int need_private = strcmp(a.step, "sign-release") == 0;
    /* start signs the endorsement of the new key with the old one */
    enum fk_err rc = fk_ota_key_load(a.old_key, need_private || strcmp(a.step, "start") == 0,
                                     &oldk, &d);
    if (rc == FK_OK) {
        rc = fk_ota_key_load(a.new_key, need_private, &newk, &d);
    }
    if (rc == FK_OK) {
        rc = fk_rotation_key_fpr(oldk, k.old_fpr);
    }
    if (rc == FK_OK) {
        rc = fk_rotation_key_fpr(newk, k.new_fpr);
    }
    if (rc == FK_OK) {
        rc = fk_inventory_open(a.inventory, &inv, &d);
    }
    if (rc != FK_OK) {
        ret = fk_cli_fail(&d, rc);
        goto out;
    }
    if (strcmp(a.step, "status") == 0) {
        rc = fk_rotation_status(inv, &k, &st, &d);
        ret = rc == FK_OK ? print_status(&st, &k) : fk_cli_fail(&d, rc);
    } else if (strcmp(a.step, "start") == 0) {
        uint8_t der[FK_ROT_DER_MAX], endorsement[FK_ROT_ENDORSE_LEN];
        size_t der_len = 0;
        /* the new public key goes into the inventory, endorsed by the old key: fleetkey-server
         * delivers both, devices check the endorsement with their security/ota_pubkey */
        rc = fk_ota_key_public_der(newk, der, sizeof der, &der_len);
        if (rc != FK_OK) {
            fk_diag_set(&d, rc, "%s: cannot encode the public key", a.new_key);
        } else {
            rc = fk_rotation_endorse(oldk, der, der_len, endorsement, &d);
        }
        if (rc == FK_OK) {
            rc = fk_rotation_start(inv, &k, der, der_len, endorsement, "provision-keys", &d);
        }
        if (rc == FK_OK) {
            printf("rotation started: new key %s recorded (staged) for every device; sign "
                   "releases with sign-release (old + new key)\n",
                   k.new_fpr);
        }
        ret = rc == FK_OK ? FK_EXIT_OK : fk_cli_fail(&d, rc);
    } else if (strcmp(a.step, "confirm") == 0) {
        rc = fk_rotation_confirm(inv, &k, a.device, a.firmware, "provision-keys", &d);
        if (rc == FK_OK) {
            printf("%s: %s confirmed\n", a.device,
                   a.firmware ? "new-key-only firmware" : "new key");
        }
        ret = rc == FK_OK ? FK_EXIT_OK : fk_cli_fail(&d, rc);
    } else if (strcmp(a.step, "sign-release") == 0) {
        ret = sign_release(inv, &a, &k, oldk, newk);
    } else {
        rc = fk_rotation_retire_old(inv, &k, "provision-keys", &st, &d);
        if (rc == FK_OK) {
            printf("old key %s retired: signing with it is refused from now on\n", k.old_fpr);
            ret = FK_EXIT_OK;
        } else {
            ret = fk_cli_fail(&d, rc);
            if (rc == FK_E_POLICY) {
                print_blockers(&st, st.confirmed == st.n);
            }
        }
    }
out:
    fk_rot_status_free(&st);
    fk_inventory_close(inv);
    fk_ota_key_free(oldk);
    fk_ota_key_free(newk);
    return ret;
}
