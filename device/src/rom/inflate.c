/* Inflate: see fkd/inflate.h. A canonical-Huffman decoder in the style of RFC 1951's own
 * description (section 3.2): code lengths -> counts per length -> symbols sorted by code, decoded
 * one bit at a time. Slow per bit, small and easy to check, which is what a flash download on
 * a 115200-baud line needs. */
#include "fkd/inflate.h"

#define MAXBITS 15
#define MAXLCODES 286
#define MAXDCODES 30
#define FIXLCODES 288

struct huff {
    int16_t count[MAXBITS + 1];
    int16_t symbol[FIXLCODES];
};

struct state {
    const uint8_t *in;
    size_t len;
    size_t pos;
    uint32_t bitbuf;
    unsigned bitcnt;
    const struct fkd_inflate_sink *sink;
    uint32_t out;
    uint32_t max_out;
    uint32_t a, b; /* Adler-32 of the output */
};

static int bits(struct state *s, unsigned need, uint32_t *v) {
    uint32_t val = s->bitbuf;
    while (s->bitcnt < need) {
        if (s->pos >= s->len) {
            return FKD_INFLATE_TRUNCATED;
        }
        val |= (uint32_t)s->in[s->pos++] << s->bitcnt;
        s->bitcnt += 8;
    }
    s->bitbuf = need < 32 ? val >> need : 0;
    s->bitcnt -= need;
    *v = need == 0 ? 0 : val & ((1u << need) - 1u);
    return FKD_INFLATE_OK;
}

static int emit(struct state *s, uint8_t b) {
    if (s->out >= s->max_out) {
        return FKD_INFLATE_TOOBIG;
    }
    if (s->sink->put(s->sink->user, b) != 0) {
        return FKD_INFLATE_SINK;
    }
    s->out++;
    s->a = (s->a + b) % 65521u;
    s->b = (s->b + s->a) % 65521u;
    return FKD_INFLATE_OK;
}

/* "Huffman codes ... are packed starting with the most-significant bit of the code": read
 * bit by bit, walking the canonical code space length by length. */
static int decode(struct state *s, const struct huff *h) {
    int code = 0, first = 0, index = 0;
    for (int len = 1; len <= MAXBITS; len++) {
        uint32_t bit = 0;
        int rc = bits(s, 1, &bit);
        if (rc != FKD_INFLATE_OK) {
            return rc;
        }
        code |= (int)bit;
        int count = h->count[len];
        if (code - count < first) {
            return h->symbol[index + (code - first)];
        }
        index += count;
        first += count;
        first <<= 1;
        code <<= 1;
    }
    return FKD_INFLATE_BAD; /* ran out of codes */
}

/* Returns 0 for a complete code, > 0 for an incomplete one, < 0 when over-subscribed. */
static int construct(struct huff *h, const int16_t *length, int n) {
    int16_t offs[MAXBITS + 1];
    for (int len = 0; len <= MAXBITS; len++) {
        h->count[len] = 0;
    }
    for (int sym = 0; sym < n; sym++) {
        h->count[length[sym]]++;
    }
    if (h->count[0] == n) {
        return 0; /* no codes: complete, but decoding will fail */
    }
    int left = 1;
    for (int len = 1; len <= MAXBITS; len++) {
        left <<= 1;
        left -= h->count[len];
        if (left < 0) {
            return left;
        }
    }
    offs[1] = 0;
    for (int len = 1; len < MAXBITS; len++) {
        offs[len + 1] = (int16_t)(offs[len] + h->count[len]);
    }
    for (int sym = 0; sym < n; sym++) {
        if (length[sym] != 0) {
            h->symbol[offs[length[sym]]++] = (int16_t)sym;
        }
    }
    return left;
}

static int codes(struct state *s, const struct huff *lencode, const struct huff *distcode) {
    static const uint16_t lbase[29] = {3,  4,  5,  6,  7,  8,  9,  10,  11,  13,
                                       15, 17, 19, 23, 27, 31, 35, 43,  51,  59,
                                       67, 83, 99, 115, 131, 163, 195, 227, 258};
    static const uint8_t lext[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                     2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
    static const uint16_t dbase[30] = {1,    2,    3,    4,    5,    7,     9,     13,
                                       17,   25,   33,   49,   65,   97,    129,   193,
                                       257,  385,  513,  769,  1025, 1537,  2049,  3073,
                                       4097, 6145, 8193, 12289, 16385, 24577};
    static const uint8_t dext[30] = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                     6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
    for (;;) {
        int sym = decode(s, lencode);
        if (sym < 0) {
            return sym;
        }
        if (sym < 256) {
            int rc = emit(s, (uint8_t)sym);
            if (rc != FKD_INFLATE_OK) {
                return rc;
            }
            continue;
        }
        if (sym == 256) {
            return FKD_INFLATE_OK;
        }
        sym -= 257;
        if (sym >= 29) {
            return FKD_INFLATE_BAD;
        }
        uint32_t extra = 0, len, dist;
        int rc = bits(s, lext[sym], &extra);
        if (rc != FKD_INFLATE_OK) {
            return rc;
        }
        len = lbase[sym] + extra;
        int dsym = decode(s, distcode);
        if (dsym < 0) {
            return dsym;
        }
        if (dsym >= 30) {
            return FKD_INFLATE_BAD;
        }
        rc = bits(s, dext[dsym], &extra);
        if (rc != FKD_INFLATE_OK) {
            return rc;
        }
        dist = dbase[dsym] + extra;
        if (dist > s->out) {
            return FKD_INFLATE_BAD; /* "distance too far back" */
        }
        while (len-- > 0) {
            uint8_t b = 0;
            if (s->sink->get(s->sink->user, dist, &b) != 0) {
                return FKD_INFLATE_SINK;
            }
            rc = emit(s, b);
            if (rc != FKD_INFLATE_OK) {
                return rc;
            }
        }
    }
}

static int stored(struct state *s) {
    /* "skip any remaining bits in current partially processed byte" */
    s->bitbuf = 0;
    s->bitcnt = 0;
    if (s->len - s->pos < 4) {
        return FKD_INFLATE_TRUNCATED;
    }
    unsigned len = s->in[s->pos] | ((unsigned)s->in[s->pos + 1] << 8);
    unsigned nlen = s->in[s->pos + 2] | ((unsigned)s->in[s->pos + 3] << 8);
    s->pos += 4;
    if (len != (~nlen & 0xFFFFu)) {
        return FKD_INFLATE_BAD;
    }
    if (s->len - s->pos < len) {
        return FKD_INFLATE_TRUNCATED;
    }
    for (unsigned i = 0; i < len; i++) {
        int rc = emit(s, s->in[s->pos++]);
        if (rc != FKD_INFLATE_OK) {
            return rc;
        }
    }
    return FKD_INFLATE_OK;
}

static int fixed(struct state *s) {
    struct huff lencode, distcode;
    int16_t lengths[FIXLCODES];
    int sym = 0;
    for (; sym < 144; sym++) {
        lengths[sym] = 8;
    }
    for (; sym < 256; sym++) {
        lengths[sym] = 9;
    }
    for (; sym < 280; sym++) {
        lengths[sym] = 7;
    }
    for (; sym < FIXLCODES; sym++) {
        lengths[sym] = 8;
    }
    (void)construct(&lencode, lengths, FIXLCODES);
    for (sym = 0; sym < MAXDCODES; sym++) {
        lengths[sym] = 5;
    }
    (void)construct(&distcode, lengths, MAXDCODES);
    return codes(s, &lencode, &distcode);
}

static int dynamic(struct state *s) {
    static const uint8_t order[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5,
                                      11, 4,  12, 3, 13, 2, 14, 1, 15};
    struct huff lencode, distcode;
    int16_t lengths[MAXLCODES + MAXDCODES];
    uint32_t nlen, ndist, ncode, v;
    int rc;

    if ((rc = bits(s, 5, &nlen)) != 0 || (rc = bits(s, 5, &ndist)) != 0 ||
        (rc = bits(s, 4, &ncode)) != 0) {
        return rc;
    }
    nlen += 257;
    ndist += 1;
    ncode += 4;
    if (nlen > MAXLCODES || ndist > MAXDCODES) {
        return FKD_INFLATE_BAD;
    }
    uint32_t index = 0;
    for (; index < ncode; index++) {
        if ((rc = bits(s, 3, &v)) != 0) {
            return rc;
        }
        lengths[order[index]] = (int16_t)v;
    }
    for (; index < 19; index++) {
        lengths[order[index]] = 0;
    }
    if (construct(&lencode, lengths, 19) != 0) {
        return FKD_INFLATE_BAD; /* the code-length code must be complete */
    }
    index = 0;
    while (index < nlen + ndist) {
        int sym = decode(s, &lencode);
        if (sym < 0) {
            return sym;
        }
        if (sym < 16) {
            lengths[index++] = (int16_t)sym;
            continue;
        }
        int16_t len = 0;
        uint32_t rep = 0;
        if (sym == 16) {
            if (index == 0) {
                return FKD_INFLATE_BAD; /* repeat with no previous length */
            }
            len = lengths[index - 1];
            rc = bits(s, 2, &rep);
            rep += 3;
        } else if (sym == 17) {
            rc = bits(s, 3, &rep);
            rep += 3;
        } else {
            rc = bits(s, 7, &rep);
            rep += 11;
        }
        if (rc != FKD_INFLATE_OK) {
            return rc;
        }
        if (index + rep > nlen + ndist) {
            return FKD_INFLATE_BAD;
        }
        while (rep-- > 0) {
            lengths[index++] = len;
        }
    }
    if (lengths[256] == 0) {
        return FKD_INFLATE_BAD; /* no end-of-block code */
    }
    int err = construct(&lencode, lengths, (int)nlen);
    if (err < 0 || (err > 0 && (int)nlen != lencode.count[0] + lencode.count[1])) {
        return FKD_INFLATE_BAD; /* incomplete only allowed for a single length-1 code */
    }
    err = construct(&distcode, lengths + nlen, (int)ndist);
    if (err < 0 || (err > 0 && (int)ndist != distcode.count[0] + distcode.count[1])) {
        return FKD_INFLATE_BAD;
    }
    return codes(s, &lencode, &distcode);
}

enum fkd_inflate_result fkd_inflate_zlib(const uint8_t *in, size_t len, uint32_t max_out,
                                         const struct fkd_inflate_sink *sink,
                                         uint32_t *produced) {
    struct state s = {in, len, 2, 0, 0, sink, 0, max_out, 1, 0};
    int rc;
    *produced = 0;
    /* RFC 1950: CM = 8 (deflate), CINFO <= 7, FCHECK makes CMF*256+FLG a multiple of 31, and
     * no preset dictionary. */
    if (len < 2) {
        return FKD_INFLATE_TRUNCATED;
    }
    if ((in[0] & 0x0Fu) != 8 || (in[0] >> 4) > 7 || ((unsigned)in[0] * 256u + in[1]) % 31u != 0 ||
        (in[1] & 0x20u) != 0) {
        return FKD_INFLATE_BAD;
    }
    uint32_t last = 0;
    do {
        uint32_t type = 0;
        if ((rc = bits(&s, 1, &last)) != 0 || (rc = bits(&s, 2, &type)) != 0) {
            break;
        }
        rc = type == 0 ? stored(&s) : type == 1 ? fixed(&s) : type == 2 ? dynamic(&s)
                                                                       : FKD_INFLATE_BAD;
    } while (rc == FKD_INFLATE_OK && !last);
    *produced = s.out;
    if (rc != FKD_INFLATE_OK) {
        return (enum fkd_inflate_result)rc;
    }
    /* The Adler-32 trailer, big-endian, starts at the next byte boundary. */
    if (s.len - s.pos < 4) {
        return FKD_INFLATE_TRUNCATED;
    }
    uint32_t want = ((uint32_t)in[s.pos] << 24) | ((uint32_t)in[s.pos + 1] << 16) |
                    ((uint32_t)in[s.pos + 2] << 8) | in[s.pos + 3];
    return want == ((s.b << 16) | s.a) ? FKD_INFLATE_OK : FKD_INFLATE_CHECK;
}
