/* `robot-sim nvs set|get|erase|list`: the device NVS runtime on a flash image, for tests and
 * demos. This is the device code path (fkd_nvs_*), not the host image writer: it appends,
 * erases and collects garbage in place exactly as a robot would, and --cut-after N stops the
 * flash after N program operations (torn with --torn) to rehearse a power cut on the file.
 * The nvs_keys partition's keys are used when it holds any (--plain ignores them). */
#include "robot_sim.h"

#include "fleetkey/common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct robot_sim nrs;

static void nvs_usage(FILE *f) {
    fputs("usage: robot-sim nvs set   --flash FILE --ns NS --key KEY VALUE [--cut-after N "
          "[--torn]]\n"
          "       robot-sim nvs get   --flash FILE --ns NS --key KEY\n"
          "       robot-sim nvs erase --flash FILE --ns NS --key KEY\n"
          "       robot-sim nvs list  --flash FILE\n"
          "  VALUE: --str TEXT | --hex HEX (blob) | --file PATH (blob) | --u8..--i64 NUMBER\n"
          "  --plain  ignore the keys in nvs_keys (mount unencrypted)\n"
          "  get and list never write; set and erase repair as a booting robot would\n"
          "  get prints strings as text, integers in decimal, blobs in hex; exit 1: not found\n",
          f);
}

static const struct {
    const char *opt;
    uint8_t type;
} int_opts[] = {
    {"--u8", FKD_NVS_U8},   {"--i8", FKD_NVS_I8},   {"--u16", FKD_NVS_U16}, {"--i16", FKD_NVS_I16},
    {"--u32", FKD_NVS_U32}, {"--i32", FKD_NVS_I32}, {"--u64", FKD_NVS_U64}, {"--i64", FKD_NVS_I64},
};

static int list_cb(void *user, const char *ns, const char *key, uint8_t type) {
    (void)user;
    const char *t = "?";
    switch (type) {
    case FKD_NVS_STR:
        t = "string";
        break;
    case FKD_NVS_BLOB_IDX:
        t = "blob";
        break;
    case FKD_NVS_BLOB:
        t = "blob(v1)";
        break;
    default:
        for (size_t i = 0; i < sizeof int_opts / sizeof int_opts[0]; i++) {
            if (int_opts[i].type == type) {
                t = int_opts[i].opt + 2;
            }
        }
    }
    printf("%s:%s %s\n", ns, key, t);
    return 0;
}

static int do_get(const char *ns, const char *key) {
    uint8_t type;
    enum fkd_err rc = fkd_nvs_find(&nrs.nvs, ns, key, &type);
    if (rc == FKD_E_NOTFOUND) {
        fprintf(stderr, "robot-sim: %s:%s: not found\n", ns, key);
        return 1;
    }
    static uint8_t buf[512u * 1024u];
    size_t len = 0;
    if (rc == FKD_OK && type == FKD_NVS_STR) {
        rc = fkd_nvs_get_str(&nrs.nvs, ns, key, (char *)buf, sizeof buf, &len);
        if (rc == FKD_OK) {
            printf("%s\n", (const char *)buf);
        }
    } else if (rc == FKD_OK && (type == FKD_NVS_BLOB_IDX || type == FKD_NVS_BLOB)) {
        rc = fkd_nvs_get_blob(&nrs.nvs, ns, key, buf, sizeof buf, &len);
        for (size_t i = 0; rc == FKD_OK && i < len; i++) {
            printf("%02x", buf[i]);
        }
        if (rc == FKD_OK) {
            printf("\n");
        }
    } else if (rc == FKD_OK) {
        struct fkd_nvs_int v;
        rc = fkd_nvs_get_int(&nrs.nvs, ns, key, &v);
        if (rc == FKD_OK && (type & 0x10u)) {
            printf("%lld\n", (long long)v.s);
        } else if (rc == FKD_OK) {
            printf("%llu\n", (unsigned long long)v.u);
        }
    }
    fkd_wipe(buf, len < sizeof buf ? len + 1 : sizeof buf);
    if (rc != FKD_OK) {
        fprintf(stderr, "robot-sim: %s:%s: %s\n", ns, key, fkd_strerror(rc));
        return rc == FKD_E_NOTFOUND ? 1 : 4;
    }
    return 0;
}

int robot_sim_nvs(int argc, char **argv) {
    const char *ns = NULL, *key = NULL, *str = NULL, *hex = NULL, *file = NULL, *num = NULL;
    uint8_t itype = 0;
    unsigned long cut = 0;
    int torn = 0, plain = 0;
    if (argc < 1 || strcmp(argv[0], "--help") == 0) {
        nvs_usage(argc < 1 ? stderr : stdout);
        return argc < 1 ? 2 : 0;
    }
    const char *verb = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--torn") == 0) {
            torn = 1;
            continue;
        }
        if (strcmp(a, "--plain") == 0) {
            plain = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "robot-sim: %s needs a value\n", a);
            return 2;
        }
        const char *v = argv[++i];
        int matched = 1;
        if (strcmp(a, "--flash") == 0) {
            nrs.flash_path = v;
        } else if (strcmp(a, "--ns") == 0) {
            ns = v;
        } else if (strcmp(a, "--key") == 0) {
            key = v;
        } else if (strcmp(a, "--str") == 0) {
            str = v;
        } else if (strcmp(a, "--hex") == 0) {
            hex = v;
        } else if (strcmp(a, "--file") == 0) {
            file = v;
        } else if (strcmp(a, "--cut-after") == 0) {
            char *end = NULL;
            cut = strtoul(v, &end, 10);
            if (*end != '\0' || cut == 0) {
                fprintf(stderr, "robot-sim: --cut-after %s: expected a positive number\n", v);
                return 2;
            }
        } else {
            matched = 0;
            for (size_t k = 0; k < sizeof int_opts / sizeof int_opts[0]; k++) {
                if (strcmp(a, int_opts[k].opt) == 0) {
                    itype = int_opts[k].type;
                    num = v;
                    matched = 1;
                }
            }
        }
        if (!matched) {
            fprintf(stderr, "robot-sim: unknown option %s\n", a);
            return 2;
        }
    }
    int is_set = strcmp(verb, "set") == 0, is_get = strcmp(verb, "get") == 0;
    int is_erase = strcmp(verb, "erase") == 0, is_list = strcmp(verb, "list") == 0;
    int nvalues = (str != NULL) + (hex != NULL) + (file != NULL) + (num != NULL);
    if (nrs.flash_path == NULL || !(is_set || is_get || is_erase || is_list) ||
        (!is_list && (ns == NULL || key == NULL)) || (is_set && nvalues != 1) ||
        (!is_set && nvalues != 0)) {
        nvs_usage(stderr);
        return 2;
    }
    fkd_log_set(fkd_posix_log, "robot-sim", FKD_LOG_WARN);
    fkd_nvs_init(&nrs.nvs);
    nrs.file.fd = -1;
    enum fkd_err rc = fkd_flash_file_open(&nrs.file, nrs.flash_path, 0, 0, &nrs.flash);
    if (rc == FKD_OK) {
        rc = fkd_part_load(&nrs.flash, &nrs.parts);
    }
    if (rc != FKD_OK) {
        fprintf(stderr, "robot-sim: %s: %s\n", nrs.flash_path, fkd_strerror(rc));
        fkd_flash_file_close(&nrs.file);
        return 2;
    }
    /* get and list only look: they must not "repair" an image they may be misreading. */
    robot_sim_mount_nvs(&nrs, !plain, 0, is_get || is_list);
    int code = 0;
    if (!nrs.nvs_mounted) {
        code = 4;
    } else if (is_list) {
        rc = fkd_nvs_foreach(&nrs.nvs, list_cb, NULL);
        code = rc == FKD_OK ? 0 : 4;
    } else if (is_get) {
        code = do_get(ns, key);
    } else {
        static uint8_t blob[512u * 1024u];
        size_t blen = 0;
        uint64_t ival = 0;
        if (hex != NULL) {
            if (fk_hex_decode(hex, strlen(hex), blob, sizeof blob, &blen, NULL) != FK_OK) {
                fprintf(stderr, "robot-sim: --hex: not an even-length hex string\n");
                code = 2;
            }
        } else if (file != NULL) {
            uint8_t *fb = NULL;
            if (fk_file_read(file, sizeof blob, &fb, &blen, NULL) != FK_OK) {
                fprintf(stderr, "robot-sim: %s: cannot read\n", file);
                code = 2;
            } else {
                memcpy(blob, fb, blen);
                fk_wipe(fb, blen);
                free(fb);
            }
        } else if (num != NULL) {
            char *end = NULL;
            if (itype & 0x10u) {
                ival = (uint64_t)strtoll(num, &end, 0);
            } else {
                ival = strtoull(num, &end, 0);
            }
            if (end == num || *end != '\0') {
                fprintf(stderr, "robot-sim: %s: not a number\n", num);
                code = 2;
            }
        }
        if (code == 0 && cut > 0) {
            fkd_flash_mem_cut(&nrs.file.mem, cut, torn);
        }
        if (code == 0) {
            if (is_erase) {
                rc = fkd_nvs_erase_key(&nrs.nvs, ns, key);
            } else if (str != NULL) {
                rc = fkd_nvs_set_str(&nrs.nvs, ns, key, str);
            } else if (num != NULL) {
                rc = fkd_nvs_set_int(&nrs.nvs, ns, key, itype, ival);
            } else {
                rc = fkd_nvs_set_blob(&nrs.nvs, ns, key, blob, blen);
            }
            if (rc == FKD_E_POWERCUT) {
                fprintf(stderr, "robot-sim: power cut after %lu flash operations%s\n", cut,
                        torn ? " (last one torn)" : "");
                code = 5;
            } else if (rc != FKD_OK) {
                fprintf(stderr, "robot-sim: %s:%s: %s\n", ns, key, fkd_strerror(rc));
                code = rc == FKD_E_NOTFOUND ? 1 : 4;
            }
        }
        fkd_wipe(blob, blen);
    }
    fkd_nvs_free(&nrs.nvs);
    if (fkd_flash_file_close(&nrs.file) != FKD_OK && code == 0) {
        code = 4;
    }
    return code;
}
