package io.fleetkey.mobile;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The DER reader and the PKCS#12 algorithm detection, positive and negative. */
class Pkcs12ProfileTest {
    private static Der der(int... bytes) {
        byte[] b = new byte[bytes.length];
        for (int i = 0; i < bytes.length; i++) {
            b[i] = (byte)bytes[i];
        }
        return new Der(b, 0, b.length);
    }

    @Test
    void modernBundleIsPbes2Aes256WithSha256() throws Exception {
        byte[] b = Fixture.bytes("alice.p12");
        Pkcs12Profile p = Pkcs12Profile.read(b, 0, b.length);
        assertEquals("sha256", p.macDigest());
        assertFalse(p.encryptions().isEmpty());
        for (String e : p.encryptions()) {
            assertEquals("PBES2/PBKDF2-hmacWithSHA256/AES-256-CBC", e);
        }
        assertFalse(p.legacyCompatible());
    }

    @Test
    void legacyBundleIs3desWithSha1() throws Exception {
        byte[] b = Fixture.bytes("alice-legacy.p12");
        Pkcs12Profile p = Pkcs12Profile.read(b, 0, b.length);
        assertEquals("sha1", p.macDigest());
        assertEquals(
            List.of("pbeWithSHA1And3-KeyTripleDES-CBC", "pbeWithSHA1And3-KeyTripleDES-CBC"),
            p.encryptions());
        assertTrue(p.legacyCompatible());
    }

    @Test
    void macVerifiesWithTheRightPasswordOnly() throws Exception {
        /* expired.p12 is made by `openssl pkcs12 -export`, the others by provision-keys. */
        for (String name : new String[] {"alice.p12", "alice-legacy.p12", "expired.p12"}) {
            byte[] b = Fixture.bytes(name);
            Pkcs12Profile p = Pkcs12Profile.read(b, 0, b.length);
            assertEquals(Pkcs12Mac.Result.OK, Pkcs12Mac.verify(p, Fixture.PASSWORD.toCharArray()),
                         name);
            assertEquals(Pkcs12Mac.Result.MISMATCH,
                         Pkcs12Mac.verify(p, "correct horse batterz".toCharArray()), name);
            assertEquals(Pkcs12Mac.Result.MISMATCH, Pkcs12Mac.verify(p, new char[0]), name);
            /* One bit of the MAC-covered content changed: the right password no longer fits. */
            byte[] x = b.clone();
            x[p.authSafeOffset + p.authSafeLength / 2] ^= 1;
            Pkcs12Profile q = Pkcs12Profile.read(x, 0, x.length);
            assertEquals(Pkcs12Mac.Result.MISMATCH,
                         Pkcs12Mac.verify(q, Fixture.PASSWORD.toCharArray()), name);
        }
    }

    @Test
    void readsInsideAWindowOnly() throws Exception {
        byte[] b = Fixture.bytes("alice-legacy.p12");
        byte[] padded = new byte[b.length + 20];
        System.arraycopy(b, 0, padded, 10, b.length);
        assertTrue(Pkcs12Profile.read(padded, 10, b.length).legacyCompatible());
        /* The window one byte short: the outer length no longer fits. */
        assertThrows(Der.DerException.class, () -> Pkcs12Profile.read(padded, 10, b.length - 1));
        /* Trailing bytes after the PFX are refused. */
        assertThrows(Der.DerException.class, () -> Pkcs12Profile.read(padded, 10, b.length + 1));
    }

    @Test
    void everyTruncationIsADerException() throws Exception {
        for (String name : new String[] {"alice.p12", "alice-legacy.p12"}) {
            byte[] b = Fixture.bytes(name);
            for (int n = 0; n < b.length; n++) {
                byte[] cut = Arrays.copyOf(b, n);
                assertThrows(Der.DerException.class,
                             () -> Pkcs12Profile.read(cut, 0, cut.length), name + " cut to " + n);
            }
        }
    }

    @Test
    void everyByteFlipIsHandled() throws Exception {
        byte[] b = Fixture.bytes("alice.p12");
        for (int i = 0; i < b.length; i++) {
            byte[] x = b.clone();
            x[i] ^= (byte)0xff;
            try {
                Pkcs12Profile.read(x, 0, x.length);
            } catch (Der.DerException expected) {
                /* A clean refusal; anything else (a RuntimeException) fails the test. */
            }
        }
    }

    @Test
    void derRefusesLengthsItCannotTrust() {
        /* Content longer than what is left. */
        assertThrows(Der.DerException.class, () -> der(0x30, 0x05, 0x01, 0x02).next());
        /* Header cut short. */
        assertThrows(Der.DerException.class, () -> der(0x30).next());
        assertThrows(Der.DerException.class, () -> der().next());
        /* Long form with the length bytes missing. */
        assertThrows(Der.DerException.class, () -> der(0x30, 0x82, 0x01).next());
        /* Indefinite length (BER only). */
        assertThrows(Der.DerException.class, () -> der(0x30, 0x80, 0x00, 0x00).next());
        /* A 5-byte length field, and a 4-byte one claiming 2 GiB. */
        assertThrows(Der.DerException.class, () -> der(0x04, 0x85, 1, 0, 0, 0, 0).next());
        assertThrows(Der.DerException.class, () -> der(0x04, 0x84, 0x7f, 0xff, 0xff, 0xff).next());
        assertThrows(Der.DerException.class, () -> der(0x04, 0x84, 0xff, 0xff, 0xff, 0xff).next());
        /* Non-minimal lengths. */
        assertThrows(Der.DerException.class, () -> der(0x04, 0x81, 0x05, 1, 2, 3, 4, 5).next());
        assertThrows(Der.DerException.class, () -> der(0x04, 0x82, 0x00, 0x81).next());
        /* Multi-byte tag. */
        assertThrows(Der.DerException.class, () -> der(0x1f, 0x01, 0x00).next());
        /* Wrong tag where one is required. */
        assertThrows(Der.DerException.class, () -> der(0x04, 0x00).next(Der.SEQUENCE));
        /* Bad OIDs: empty, last arc unterminated. */
        assertThrows(Der.DerException.class, () -> der(0x06, 0x00).next().oid());
        assertThrows(Der.DerException.class, () -> der(0x06, 0x02, 0x2a, 0x86).next().oid());
        /* INTEGER: negative, empty, too long for a count. */
        assertThrows(Der.DerException.class, () -> der(0x02, 0x01, 0x80).next().smallInteger());
        assertThrows(Der.DerException.class, () -> der(0x02, 0x00).next().smallInteger());
        assertThrows(Der.DerException.class,
                     () -> der(0x02, 0x09, 1, 0, 0, 0, 0, 0, 0, 0, 0).next().smallInteger());
        /* Windows outside the array are a caller bug. */
        assertThrows(IllegalArgumentException.class, () -> new Der(new byte[4], 2, 3));
        assertThrows(IllegalArgumentException.class, () -> new Der(new byte[4], -1, 1));
        assertThrows(IllegalArgumentException.class,
                     () -> new Der(new byte[4], 1, Integer.MAX_VALUE));
    }

    @Test
    void derReadsWellFormedElements() throws Exception {
        Der d = der(0x30, 0x09, 0x06, 0x03, 0x2a, 0x86, 0x48, 0x02, 0x02, 0x27, 0x10);
        Der seq = d.next(Der.SEQUENCE).contents();
        d.expectEnd();
        assertEquals("1.2.840", seq.next().oid());
        assertEquals(10000, seq.next().smallInteger());
        seq.expectEnd();
        byte[] big = new byte[4 + 300];
        big[0] = 0x04;
        big[1] = (byte)0x82;
        big[2] = 0x01;
        big[3] = 0x2c;
        assertEquals(300, new Der(big, 0, big.length).next().contentLength);
    }
}
