package io.fleetkey.mobile;

/**
 * A minimal DER reader over {@code (buf, offset, len)}: just enough to walk a PKCS#12 file and
 * name the algorithms inside it. It trusts no length: every header and content length is checked
 * against what remains of the enclosing element before it is used, the long length form is
 * limited to 4 bytes, and the BER indefinite form (which DER forbids) is refused. It never
 * copies: a {@link Der} value is a window into the caller's array, which must not change while
 * the value is in use. Not thread-safe for a single reader; values are immutable.
 */
final class Der {
    static final int SEQUENCE = 0x30;
    static final int OCTET_STRING = 0x04;
    static final int OID = 0x06;
    static final int INTEGER = 0x02;
    static final int NULL = 0x05;
    /** [0] constructed, context specific (EXPLICIT content of ContentInfo). */
    static final int CONTEXT_0_CONSTRUCTED = 0xA0;
    /** [0] primitive, context specific (IMPLICIT encryptedContent of EncryptedContentInfo). */
    static final int CONTEXT_0_PRIMITIVE = 0x80;

    /** Thrown for any malformed input; says at which offset and what was expected. */
    static final class DerException extends Exception {
        private static final long serialVersionUID = 1L;

        DerException(String message) {
            super(message);
        }
    }

    /** One element: its tag and a window [contentOffset, contentOffset + contentLength). */
    static final class Element {
        final int tag;
        final byte[] buf;
        final int offset; /* where the tag byte is */
        final int contentOffset;
        final int contentLength;

        Element(int tag, byte[] buf, int offset, int contentOffset, int contentLength) {
            this.tag = tag;
            this.buf = buf;
            this.offset = offset;
            this.contentOffset = contentOffset;
            this.contentLength = contentLength;
        }

        int end() {
            return contentOffset + contentLength;
        }

        /** A reader over this element's content (for SEQUENCE, [0], and OCTET STRING wrappers). */
        Der contents() {
            return new Der(buf, contentOffset, contentLength);
        }

        /** The OID in dotted form; only for tag OID. */
        String oid() throws DerException {
            expectTag(OID);
            if (contentLength == 0 || contentLength > 64) {
                throw new DerException("OID at byte " + offset + ": length " + contentLength +
                                       ", expected 1 to 64");
            }
            StringBuilder sb = new StringBuilder();
            long value = 0;
            boolean first = true;
            for (int i = 0; i < contentLength; i++) {
                int b = buf[contentOffset + i] & 0xff;
                if (value > (Long.MAX_VALUE >>> 7)) {
                    throw new DerException("OID at byte " + offset + ": arc too large");
                }
                value = (value << 7) | (b & 0x7f);
                if ((b & 0x80) != 0) {
                    if (i == contentLength - 1) {
                        throw new DerException("OID at byte " + offset + ": truncated arc");
                    }
                    continue;
                }
                if (first) {
                    /* X.690 8.19.4: the first subidentifier packs the first two arcs. */
                    long a = value < 80 ? value / 40 : 2;
                    sb.append(a).append('.').append(value - a * 40);
                    first = false;
                } else {
                    sb.append('.').append(value);
                }
                value = 0;
            }
            return sb.toString();
        }

        /** A small non-negative INTEGER (iteration counts, versions). */
        long smallInteger() throws DerException {
            expectTag(INTEGER);
            if (contentLength < 1 || contentLength > 8) {
                throw new DerException("INTEGER at byte " + offset + ": length " + contentLength +
                                       ", expected 1 to 8");
            }
            if ((buf[contentOffset] & 0x80) != 0) {
                throw new DerException("INTEGER at byte " + offset + ": negative");
            }
            long v = 0;
            for (int i = 0; i < contentLength; i++) {
                v = (v << 8) | (buf[contentOffset + i] & 0xff);
            }
            return v;
        }

        void expectTag(int want) throws DerException {
            if (tag != want) {
                throw new DerException(
                    String.format("byte %d: tag 0x%02x, expected 0x%02x", offset, tag, want));
            }
        }
    }

    private final byte[] buf;
    private final int end;
    private int pos;

    /**
     * A reader over buf[offset, offset + len). Throws IllegalArgumentException when that window
     * is not inside buf (a caller bug, not bad input).
     */
    Der(byte[] buf, int offset, int len) {
        if (buf == null || offset < 0 || len < 0 || offset > buf.length ||
            len > buf.length - offset) {
            throw new IllegalArgumentException("window outside the buffer");
        }
        this.buf = buf;
        this.pos = offset;
        this.end = offset + len;
    }

    boolean hasMore() {
        return pos < end;
    }

    /** Reads the next element header; its content must lie inside this reader's window. */
    Element next() throws DerException {
        int start = pos;
        if (end - pos < 2) {
            throw new DerException("byte " + start + ": truncated header (" + (end - pos) +
                                   " bytes left, need 2)");
        }
        int tag = buf[pos++] & 0xff;
        if ((tag & 0x1f) == 0x1f) {
            throw new DerException("byte " + start + ": multi-byte tags are not used in PKCS#12");
        }
        int first = buf[pos++] & 0xff;
        long length;
        if (first < 0x80) {
            length = first;
        } else if (first == 0x80) {
            throw new DerException("byte " + start + ": indefinite length (BER), expected DER");
        } else {
            int n = first & 0x7f;
            if (n > 4) {
                throw new DerException("byte " + start + ": " + n + "-byte length, at most 4");
            }
            if (end - pos < n) {
                throw new DerException("byte " + start + ": truncated length field");
            }
            length = 0;
            for (int i = 0; i < n; i++) {
                length = (length << 8) | (buf[pos++] & 0xff);
            }
            if (length < 0x80 || (n > 1 && length < (1L << (8 * (n - 1))))) {
                throw new DerException("byte " + start + ": length not minimally encoded");
            }
        }
        /* Compare against what remains, never pos + length <= end (int overflow). */
        if (length > end - pos) {
            throw new DerException("byte " + start + ": length " + length + " but only " +
                                   (end - pos) + " bytes left");
        }
        Element e = new Element(tag, buf, start, pos, (int)length);
        pos += (int)length;
        return e;
    }

    /** Reads the next element and checks its tag. */
    Element next(int tag) throws DerException {
        Element e = next();
        e.expectTag(tag);
        return e;
    }

    /** Fails when anything is left in this window (trailing bytes are refused). */
    void expectEnd() throws DerException {
        if (pos != end) {
            throw new DerException("byte " + pos + ": " + (end - pos) + " trailing bytes");
        }
    }
}
