package io.fleetkey.mobile;

import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.util.Arrays;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * Checks a PKCS#12 bundle's password against its MAC (RFC 7292 appendix B key derivation, then
 * HMAC over the authSafe content) before the platform's KeyStore sees the bundle. Why not just
 * call KeyStore.load: the JDK reports a wrong password as an IOException caused by
 * UnrecoverableKeyException, Android's BouncyCastle provider as a plain IOException ("mac
 * invalid"), so only our own check gives one answer on both. Stateless, thread-safe.
 */
final class Pkcs12Mac {
    /** The MAC's iteration count is attacker-chosen: bound the work (OpenSSL writes 2048). */
    static final long MAX_ITERATIONS = 1_000_000;

    enum Result { OK, MISMATCH, NO_MAC }

    private Pkcs12Mac() {
    }

    /**
     * Verifies p's MAC with password (borrowed; the copies made here are wiped). Throws
     * GeneralSecurityException for an unknown digest or an iteration count above the bound.
     */
    static Result verify(Pkcs12Profile p, char[] password) throws GeneralSecurityException {
        if (p.macDigestOid == null) {
            return Result.NO_MAC;
        }
        String md;
        String hmac;
        int v; /* the digest's block size in bytes */
        switch (p.macDigestOid) {
        case Pkcs12Profile.OID_SHA1:
            md = "SHA-1";
            hmac = "HmacSHA1";
            v = 64;
            break;
        case "2.16.840.1.101.3.4.2.1":
            md = "SHA-256";
            hmac = "HmacSHA256";
            v = 64;
            break;
        case "2.16.840.1.101.3.4.2.2":
            md = "SHA-384";
            hmac = "HmacSHA384";
            v = 128;
            break;
        case "2.16.840.1.101.3.4.2.3":
            md = "SHA-512";
            hmac = "HmacSHA512";
            v = 128;
            break;
        default:
            throw new GeneralSecurityException("PKCS#12 MAC digest " + p.macDigestOid +
                                               " is not supported");
        }
        if (p.macIterations < 1 || p.macIterations > MAX_ITERATIONS) {
            throw new GeneralSecurityException("PKCS#12 MAC iterations " + p.macIterations +
                                               " outside [1, " + MAX_ITERATIONS + "]");
        }
        MessageDigest h = MessageDigest.getInstance(md);
        int u = h.getDigestLength();
        if (p.macLength != u) {
            return Result.MISMATCH;
        }
        byte[] pw = bmpString(password);
        byte[] key = null;
        byte[] input = null;
        try {
            /* B.2: D = v bytes of ID 3 (MAC), I = S || P, each repeated to a multiple of v. */
            byte[] s = repeat(p.buf, p.saltOffset, p.saltLength, v);
            byte[] pp = repeat(pw, 0, pw.length, v);
            input = new byte[v + s.length + pp.length];
            Arrays.fill(input, 0, v, (byte)3);
            System.arraycopy(s, 0, input, v, s.length);
            System.arraycopy(pp, 0, input, v + s.length, pp.length);
            Arrays.fill(pp, (byte)0);
            /* The HMAC key is u bytes = one block A1 = H^r(D || I): no I update needed. */
            key = h.digest(input);
            for (long i = 1; i < p.macIterations; i++) {
                byte[] next = h.digest(key);
                Arrays.fill(key, (byte)0);
                key = next;
            }
            Mac m = Mac.getInstance(hmac);
            m.init(new SecretKeySpec(key, hmac));
            m.update(p.buf, p.authSafeOffset, p.authSafeLength);
            byte[] got = m.doFinal();
            byte[] want = Arrays.copyOfRange(p.buf, p.macOffset, p.macOffset + p.macLength);
            /* MessageDigest.isEqual is constant time: no timing hint about the MAC. */
            return MessageDigest.isEqual(got, want) ? Result.OK : Result.MISMATCH;
        } finally {
            Arrays.fill(pw, (byte)0);
            if (key != null) {
                Arrays.fill(key, (byte)0);
            }
            if (input != null) {
                Arrays.fill(input, (byte)0);
            }
        }
    }

    /* B.1: the password as a BMPString (UTF-16 big endian) with two zero bytes at the end. */
    private static byte[] bmpString(char[] password) {
        if (password.length == 0) {
            return new byte[0];
        }
        ByteBuffer b = StandardCharsets.UTF_16BE.encode(CharBuffer.wrap(password));
        byte[] out = new byte[b.remaining() + 2];
        b.get(out, 0, b.remaining());
        if (b.hasArray()) {
            Arrays.fill(b.array(), (byte)0);
        }
        return out;
    }

    /* src[off, off + len) repeated to v * ceil(len / v) bytes (empty stays empty). */
    private static byte[] repeat(byte[] src, int off, int len, int v) {
        if (len == 0) {
            return new byte[0];
        }
        byte[] out = new byte[v * ((len + v - 1) / v)];
        for (int i = 0; i < out.length; i++) {
            out[i] = src[off + i % len];
        }
        return out;
    }
}
