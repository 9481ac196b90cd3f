/* Flash wrappers and the in-memory NOR flash with power-loss injection (see fkd/flash.h).
 * The memory flash is what unit tests and the power-cut sweep run on, and what the POSIX port
 * puts over an mmap'd image file, so both share one set of NOR rules. */
#include "fkd/flash.h"

#include <string.h>

static int in_range(const struct fkd_flash *f, uint32_t addr, size_t len) {
    return addr <= f->size && len <= (size_t)(f->size - addr);
}

enum fkd_err fkd_flash_read(const struct fkd_flash *f, uint32_t addr, void *buf, size_t len) {
    if (!in_range(f, addr, len)) {
        return FKD_E_RANGE;
    }
    return f->ops->read(f->user, addr, buf, len);
}

enum fkd_err fkd_flash_write(const struct fkd_flash *f, uint32_t addr, const void *buf,
                             size_t len) {
    if (!in_range(f, addr, len)) {
        return FKD_E_RANGE;
    }
    return f->ops->write(f->user, addr, buf, len);
}

enum fkd_err fkd_flash_erase(const struct fkd_flash *f, uint32_t addr) {
    if (addr % FKD_FLASH_SECTOR != 0 || !in_range(f, addr, FKD_FLASH_SECTOR)) {
        return FKD_E_RANGE;
    }
    return f->ops->erase(f->user, addr);
}

/* Counts one program operation; returns how many bytes of len may be applied (len, a torn
 * part, or 0) and whether the call fails. */
static enum fkd_err mem_step(struct fkd_flash_mem *m, size_t len, size_t *apply) {
    if (m->dead) {
        *apply = 0;
        return FKD_E_POWERCUT;
    }
    m->ops++;
    if (m->cut_at != 0 && m->ops >= m->cut_at) {
        m->dead = 1;
        *apply = m->torn ? len / 2 : 0;
        return FKD_E_POWERCUT;
    }
    *apply = len;
    return FKD_OK;
}

static enum fkd_err mem_read(void *user, uint32_t addr, void *buf, size_t len) {
    struct fkd_flash_mem *m = user;
    memcpy(buf, m->buf + addr, len);
    return FKD_OK;
}

static enum fkd_err mem_write(void *user, uint32_t addr, const void *buf, size_t len) {
    struct fkd_flash_mem *m = user;
    size_t apply;
    enum fkd_err rc = mem_step(m, len, &apply);
    const uint8_t *src = buf;
    int set = 0;
    for (size_t i = 0; i < apply; i++) {
        uint8_t old = m->buf[addr + i];
        if ((uint8_t)(src[i] & ~old) != 0) {
            set = 1; /* NOR cannot turn 0 into 1: the chip keeps the 0 */
        }
        m->buf[addr + i] = (uint8_t)(old & src[i]);
    }
    if (set) {
        m->set_bits++;
    }
    return rc;
}

static enum fkd_err mem_erase(void *user, uint32_t addr) {
    struct fkd_flash_mem *m = user;
    size_t apply;
    enum fkd_err rc = mem_step(m, FKD_FLASH_SECTOR, &apply);
    memset(m->buf + addr, 0xFF, apply);
    if (rc == FKD_OK) {
        m->erases++;
    }
    return rc;
}

static const struct fkd_flash_ops mem_ops = {mem_read, mem_write, mem_erase};

void fkd_flash_mem_init(struct fkd_flash_mem *m, uint8_t *buf, uint32_t size,
                        struct fkd_flash *out) {
    memset(m, 0, sizeof *m);
    m->buf = buf;
    m->size = size;
    out->ops = &mem_ops;
    out->user = m;
    out->size = size;
}

void fkd_flash_mem_cut(struct fkd_flash_mem *m, unsigned long nth, int torn) {
    m->cut_at = nth == 0 ? 0 : m->ops + nth;
    m->torn = torn;
    m->dead = 0;
}
