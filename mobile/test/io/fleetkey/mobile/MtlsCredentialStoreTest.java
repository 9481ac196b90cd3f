package io.fleetkey.mobile;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.security.PrivateKey;
import java.security.cert.CertificateException;
import java.security.cert.X509Certificate;
import java.time.Clock;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.Arrays;
import javax.net.ssl.X509TrustManager;
import org.junit.jupiter.api.Test;

/** MtlsCredentialStore over real bundles from provision-keys (mobile/test/make_fixture.sh). */
class MtlsCredentialStoreTest {
    private static X509Certificate[] chainOf(String bundle) throws Exception {
        /* A server chain as the trust manager sees it during a handshake. */
        java.security.KeyStore ks = java.security.KeyStore.getInstance("PKCS12");
        char[] pw = "server-pass".toCharArray();
        ks.load(new java.io.ByteArrayInputStream(Fixture.bytes(bundle)), pw);
        java.security.cert.Certificate[] c = ks.getCertificateChain("localhost");
        return Arrays.copyOf(c, c.length, X509Certificate[].class);
    }

    @Test
    void modernBundleGivesKeyAndPinnedTrustManagers() throws Exception {
        MtlsCredentialStore s = Fixture.load("alice.p12");
        assertEquals("alice", s.clientName());
        PrivateKey k = s.keyManager().getPrivateKey(s.alias());
        assertNotNull(k);
        assertEquals("EC", k.getAlgorithm());
        X509Certificate[] chain = s.keyManager().getCertificateChain(s.alias());
        assertTrue(chain.length >= 2, "leaf + issuing CA");
        assertEquals(s.certificate(), chain[0]);
        assertFalse(s.profile().legacyCompatible());
        assertEquals("sha256", s.profile().macDigest());
        assertNotNull(s.sslContext());
    }

    @Test
    void trustManagerAcceptsOnlyTheFleetRoot() throws Exception {
        X509TrustManager tm = Fixture.load("alice.p12").trustManager();
        assertEquals(1, tm.getAcceptedIssuers().length);
        assertEquals(Fixture.root(), tm.getAcceptedIssuers()[0]);
        tm.checkServerTrusted(chainOf("server.p12"), "ECDHE_ECDSA");
        /* Same host name, another CA: refused although it is a perfectly valid chain. */
        assertThrows(CertificateException.class,
                     () -> tm.checkServerTrusted(chainOf("other/server.p12"), "ECDHE_ECDSA"));
    }

    @Test
    void legacyBundleLoadsOnOldAndroid() throws Exception {
        MtlsCredentialStore s = MtlsCredentialStore.load(Fixture.bytes("alice-legacy.p12"),
                                                         Fixture.PASSWORD.toCharArray(),
                                                         Fixture.root(), 26, Clock.systemUTC());
        assertTrue(s.profile().legacyCompatible());
        assertEquals("sha1", s.profile().macDigest());
        assertEquals("alice", s.clientName());
    }

    @Test
    void modernBundleOnOldAndroidPointsToLegacyExport() throws Exception {
        CredentialException.LegacyBundleRequired e =
            assertThrows(CredentialException.LegacyBundleRequired.class,
                         ()
                             -> MtlsCredentialStore.load(Fixture.bytes("alice.p12"),
                                                         Fixture.PASSWORD.toCharArray(),
                                                         Fixture.root(), 30, Clock.systemUTC()));
        assertTrue(e.getMessage().contains("provision-keys export-p12 --legacy"), e.getMessage());
        assertTrue(e.getMessage().contains("AES-256-CBC"), e.getMessage());
        assertTrue(e.getMessage().contains("hmacWithSHA256"), e.getMessage());
        /* Android 12 (API 31) reads PBES2: the same bundle is fine there. */
        MtlsCredentialStore.load(Fixture.bytes("alice.p12"), Fixture.PASSWORD.toCharArray(),
                                 Fixture.root(), 31, Clock.systemUTC());
    }

    @Test
    void wrongPasswordIsItsOwnErrorAndNotQuoted() throws Exception {
        for (String bundle : new String[] {"alice.p12", "alice-legacy.p12"}) {
            String bad = "wrong horse staple";
            try (Fixture.LogCapture log = new Fixture.LogCapture()) {
                CredentialException.WrongPassword e =
                    assertThrows(CredentialException.WrongPassword.class,
                                 ()
                                     -> MtlsCredentialStore.load(
                                         Fixture.bytes(bundle), bad.toCharArray(), Fixture.root(),
                                         MtlsCredentialStore.ANY_PLATFORM, Clock.systemUTC()));
                assertTrue(e.getMessage().contains("wrong password"), e.getMessage());
                Fixture.assertNoSecretIn(e, bad, Fixture.PASSWORD);
                log.assertNoSecret(bad, Fixture.PASSWORD);
            }
        }
    }

    @Test
    void callersPasswordArrayIsNotChanged() throws Exception {
        char[] pw = Fixture.PASSWORD.toCharArray();
        MtlsCredentialStore.load(Fixture.bytes("alice.p12"), pw, Fixture.root(),
                                 MtlsCredentialStore.ANY_PLATFORM, Clock.systemUTC());
        assertEquals(Fixture.PASSWORD, new String(pw));
    }

    @Test
    void expiredCertificateIsRefused() throws Exception {
        CredentialException.Expired e =
            assertThrows(CredentialException.Expired.class, () -> Fixture.load("expired.p12"));
        assertTrue(e.getMessage().contains("2021-01-01T00:00:00Z"), e.getMessage());
        assertTrue(e.getMessage().contains("expired"), e.getMessage());
    }

    @Test
    void expiryFollowsTheInjectedClock() throws Exception {
        MtlsCredentialStore s = Fixture.load("alice.p12");
        Instant after = s.certificate().getNotAfter().toInstant().plusSeconds(1);
        assertThrows(CredentialException.Expired.class,
                     ()
                         -> MtlsCredentialStore.load(Fixture.bytes("alice.p12"),
                                                     Fixture.PASSWORD.toCharArray(), Fixture.root(),
                                                     MtlsCredentialStore.ANY_PLATFORM,
                                                     Clock.fixed(after, ZoneOffset.UTC)));
        /* The expired bundle was fine in 2020. */
        MtlsCredentialStore.load(
            Fixture.bytes("expired.p12"), Fixture.PASSWORD.toCharArray(), Fixture.root(),
            MtlsCredentialStore.ANY_PLATFORM,
            Clock.fixed(Instant.parse("2020-06-01T00:00:00Z"), ZoneOffset.UTC));
    }

    @Test
    void notYetValidCertificateIsItsOwnError() throws Exception {
        CredentialException.NotYetValid e =
            assertThrows(CredentialException.NotYetValid.class, () -> Fixture.load("future.p12"));
        assertTrue(e.getMessage().contains("not valid before"), e.getMessage());
    }

    @Test
    void damagedBundlesAreMalformedNeverCrash() throws Exception {
        byte[] good = Fixture.bytes("alice.p12");
        /* Every truncation: a clean Malformed, never a RuntimeException. */
        for (int n = 0; n < good.length; n++) {
            byte[] cut = Arrays.copyOf(good, n);
            assertThrows(CredentialException.class,
                         ()
                             -> MtlsCredentialStore.load(
                                 cut, Fixture.PASSWORD.toCharArray(), Fixture.root(),
                                 MtlsCredentialStore.ANY_PLATFORM, Clock.systemUTC()),
                         "truncated to " + n);
        }
        byte[] junk = "not a bundle at all".getBytes(java.nio.charset.StandardCharsets.US_ASCII);
        assertThrows(
            CredentialException.Malformed.class,
            ()
                -> MtlsCredentialStore.load(junk, Fixture.PASSWORD.toCharArray(), Fixture.root(),
                                            MtlsCredentialStore.ANY_PLATFORM, Clock.systemUTC()));
    }

    @Test
    void flippedBytesNeverEscapeAsRuntimeExceptions() throws Exception {
        byte[] good = Fixture.bytes("alice-legacy.p12");
        for (int i = 0; i < good.length; i += 7) {
            byte[] b = good.clone();
            b[i] ^= 0x5a;
            try {
                MtlsCredentialStore.load(b, Fixture.PASSWORD.toCharArray(), Fixture.root(),
                                         MtlsCredentialStore.ANY_PLATFORM, Clock.systemUTC());
            } catch (CredentialException expected) {
                /* Refused cleanly; some flips (e.g. in a salt's unused bits) are harmless. */
            }
        }
    }
}
