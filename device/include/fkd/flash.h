/* Flash access for the device library: an operations table in caller memory, NOR semantics.
 *
 * NOR flash as on the ESP32: erase sets a whole 4 KiB sector to 0xFF; a write can only clear
 * bits (the stored byte becomes old & new), so a region is written once between erases. Every
 * NVS and partition-table access goes through this table, which is how the POSIX port keeps
 * the flash in an image file and how tests cut the power after the Nth write or erase.
 *
 * fkd_flash_mem (below) is a pure-C implementation over a caller buffer, with power-loss
 * injection; the POSIX port maps an image file and reuses it. Thread safety: none; one user. */
#ifndef FKD_FLASH_H
#define FKD_FLASH_H

#include "fkd/common.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FKD_FLASH_SECTOR 4096u
#define FKD_FLASH_DEFAULT_SIZE (4u * 1024u * 1024u)

/* Each op returns FKD_OK, FKD_E_RANGE (outside the chip), FKD_E_IO, or FKD_E_POWERCUT once a
 * simulated power loss has happened (every later write/erase fails the same way). */
struct fkd_flash_ops {
    enum fkd_err (*read)(void *user, uint32_t addr, void *buf, size_t len);
    enum fkd_err (*write)(void *user, uint32_t addr, const void *buf, size_t len);
    /* Erases the one sector starting at addr (a multiple of FKD_FLASH_SECTOR). */
    enum fkd_err (*erase)(void *user, uint32_t addr);
};

/* A flash chip: ops + their state. Both pointers are borrowed for the life of the struct. */
struct fkd_flash {
    const struct fkd_flash_ops *ops;
    void *user;
    uint32_t size; /* bytes */
};

/* Bounds-checked wrappers (addr + len never wraps). Same return codes as the ops. */
FKD_MUST_CHECK enum fkd_err fkd_flash_read(const struct fkd_flash *f, uint32_t addr, void *buf,
                                           size_t len);
FKD_MUST_CHECK enum fkd_err fkd_flash_write(const struct fkd_flash *f, uint32_t addr,
                                            const void *buf, size_t len);
FKD_MUST_CHECK enum fkd_err fkd_flash_erase(const struct fkd_flash *f, uint32_t addr);

/* ---- flash in a caller buffer, with power-loss injection ------------------------------------
 * Writes AND into the buffer (NOR), erases fill a sector with 0xFF. Counting: every write and
 * every erase call is one "program operation"; after fkd_flash_mem_cut(m, n, torn), the nth
 * operation from then on (1-based) is where the power fails: if torn, it applies only its
 * first half (a write: the first len/2 bytes; an erase: the first half of the sector),
 * otherwise it is not applied at all, and it and every later write/erase fail with
 * FKD_E_POWERCUT. Reads keep working (the test
 * inspects the state); fkd_flash_mem_cut(m, 0, 0) clears the cut ("reboot"). */
struct fkd_flash_mem {
    uint8_t *buf;
    uint32_t size;
    unsigned long ops;       /* program operations attempted so far */
    unsigned long erases;    /* sector erases applied so far */
    unsigned long cut_at;    /* 0 = never */
    int torn;
    int dead;                /* the cut happened */
    unsigned long set_bits;  /* writes that tried to turn a 0 bit into 1 (a caller bug) */
};

/* Wraps buf (size bytes, a multiple of FKD_FLASH_SECTOR) into m and out. Cannot fail. */
void fkd_flash_mem_init(struct fkd_flash_mem *m, uint8_t *buf, uint32_t size,
                        struct fkd_flash *out);
void fkd_flash_mem_cut(struct fkd_flash_mem *m, unsigned long nth, int torn);

#ifdef __cplusplus
}
#endif
#endif
