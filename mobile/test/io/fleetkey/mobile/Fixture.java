package io.fleetkey.mobile;

import static org.junit.jupiter.api.Assertions.assertFalse;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.security.KeyStore;
import java.security.cert.X509Certificate;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.time.ZoneId;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.List;
import java.util.logging.Handler;
import java.util.logging.Level;
import java.util.logging.LogRecord;
import java.util.logging.Logger;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;

/**
 * What the tests share: the bundles made by mobile/test/make_fixture.sh (directory in the system
 * property fleetkey.fixture), a settable clock, and a capture of every log line of the library
 * so tests can assert that no secret reaches a log.
 */
final class Fixture {
    static final String PASSWORD = "correct horse battery";

    private Fixture() {
    }

    static Path dir() {
        String d = System.getProperty("fleetkey.fixture");
        if (d == null) {
            throw new IllegalStateException("run with -Dfleetkey.fixture=DIR (make_fixture.sh)");
        }
        return Paths.get(d);
    }

    static byte[] bytes(String name) throws IOException {
        return Files.readAllBytes(dir().resolve(name));
    }

    static X509Certificate root() throws Exception {
        try (InputStream in = Files.newInputStream(dir().resolve("pki/root.crt.pem"))) {
            return MtlsCredentialStore.readCertificate(in);
        }
    }

    static MtlsCredentialStore load(String bundle) throws Exception {
        return MtlsCredentialStore.load(bytes(bundle), PASSWORD.toCharArray(), root(),
                                        MtlsCredentialStore.ANY_PLATFORM, Clock.systemUTC());
    }

    /** The TLS context of a test HTTPS server: server.p12 (or other/server.p12). */
    static SSLContext serverContext(String p12) throws Exception {
        KeyStore ks = KeyStore.getInstance("PKCS12");
        char[] pw = "server-pass".toCharArray();
        try (InputStream in = Files.newInputStream(dir().resolve(p12))) {
            ks.load(in, pw);
        }
        KeyManagerFactory kmf =
            KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
        kmf.init(ks, pw);
        SSLContext ctx = SSLContext.getInstance("TLS");
        /* Clients must present a certificate of the fleet: the root is the only anchor. */
        ctx.init(kmf.getKeyManagers(),
                 new javax.net.ssl.TrustManager[] {MtlsCredentialStore.pinnedTrustManager(root())},
                 null);
        return ctx;
    }

    /** A clock the test moves by hand. */
    static final class MutableClock extends Clock {
        private volatile Instant now;

        MutableClock(Instant start) {
            now = start;
        }

        void set(Instant t) {
            now = t;
        }

        void advance(Duration d) {
            now = now.plus(d);
        }

        @Override
        public Instant instant() {
            return now;
        }

        @Override
        public ZoneId getZone() {
            return ZoneOffset.UTC;
        }

        @Override
        public Clock withZone(ZoneId zone) {
            return this;
        }
    }

    /** Every record of the io.fleetkey.mobile logger, at every level, while open. */
    static final class LogCapture extends Handler implements AutoCloseable {
        private final Logger logger = Logger.getLogger("io.fleetkey.mobile");
        private final Level oldLevel;
        final List<String> lines = new ArrayList<>();

        LogCapture() {
            oldLevel = logger.getLevel();
            logger.setLevel(Level.ALL);
            setLevel(Level.ALL);
            logger.addHandler(this);
        }

        @Override
        public synchronized void publish(LogRecord r) {
            lines.add(r.getLevel() + " " + r.getMessage());
        }

        synchronized List<String> snapshot() {
            return new ArrayList<>(lines);
        }

        /** Fails when a secret appears in any captured line. */
        void assertNoSecret(String... secrets) {
            for (String line : snapshot()) {
                for (String s : secrets) {
                    if (s != null && !s.isEmpty()) {
                        assertFalse(line.contains(s),
                                    "a secret reached the log: " + line.length() + "-char line");
                    }
                }
            }
        }

        @Override
        public void flush() {
        }

        @Override
        public void close() {
            logger.removeHandler(this);
            logger.setLevel(oldLevel);
        }
    }

    /** Fails when a secret appears in t's message or in any of its causes'. */
    static void assertNoSecretIn(Throwable t, String... secrets) {
        for (Throwable c = t; c != null; c = c.getCause()) {
            String m = String.valueOf(c.getMessage()) + " " + c;
            for (String s : secrets) {
                if (s != null && !s.isEmpty()) {
                    assertFalse(m.contains(s),
                                "a secret is in an exception message: " + c.getClass().getName());
                }
            }
        }
    }
}
