/* Error names and texts, generated from the one table in common.h; and fk_diag helpers. */
#include "fleetkey/common.h"

#include <stdio.h>
#include <string.h>

static const char *const texts[] = {
#define FK_ERR_TEXT(name, text) text,
    FK_ERR_TABLE(FK_ERR_TEXT)
#undef FK_ERR_TEXT
};

static const char *const names[] = {
#define FK_ERR_NAME(name, text) #name,
    FK_ERR_TABLE(FK_ERR_NAME)
#undef FK_ERR_NAME
};

const char *fk_strerror(enum fk_err rc) {
    if ((unsigned)rc >= (unsigned)FK_ERR_COUNT) {
        return "unknown error";
    }
    return texts[rc];
}

const char *fk_errname(enum fk_err rc) {
    if ((unsigned)rc >= (unsigned)FK_ERR_COUNT) {
        return "FK_E_UNKNOWN";
    }
    return names[rc];
}

void fk_diag_init(struct fk_diag *d) {
    if (d == NULL) {
        return;
    }
    memset(d, 0, sizeof *d);
    d->offset = -1;
}

enum fk_err fk_diag_set(struct fk_diag *d, enum fk_err rc, const char *fmt, ...) {
    if (d != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d->msg, sizeof d->msg, fmt, ap);
        va_end(ap);
    }
    return rc;
}

enum fk_err fk_diag_at(struct fk_diag *d, enum fk_err rc, const char *file, long line,
                       const char *fmt, ...) {
    if (d != NULL) {
        snprintf(d->file, sizeof d->file, "%s", file != NULL ? file : "");
        d->line = line;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d->msg, sizeof d->msg, fmt, ap);
        va_end(ap);
    }
    return rc;
}

void fk_diag_format(const struct fk_diag *d, char *buf, size_t size) {
    if (size == 0) {
        return;
    }
    if (d->file[0] != '\0' && d->line > 0) {
        snprintf(buf, size, "%s:%ld: %s", d->file, d->line, d->msg);
    } else if (d->file[0] != '\0' && d->offset >= 0) {
        snprintf(buf, size, "%s: offset 0x%llx: %s", d->file, (unsigned long long)d->offset,
                 d->msg);
    } else if (d->file[0] != '\0') {
        snprintf(buf, size, "%s: %s", d->file, d->msg);
    } else {
        snprintf(buf, size, "%s", d->msg);
    }
}
