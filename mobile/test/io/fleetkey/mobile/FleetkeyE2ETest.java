package io.fleetkey.mobile;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.InputStream;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.security.cert.X509Certificate;
import java.time.Clock;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The JDK client against the real fleetkey-server (tests/integration/mobile_e2e.sh starts it and
 * passes, as system properties: fleetkey.e2e.base https://127.0.0.1:PORT, fleetkey.e2e.dir with
 * pki/root.crt.pem, alice.p12, bob.p12 and pw, fleetkey.e2e.serverlog, fleetkey.e2e.devices the
 * device ids the inventory holds, comma separated, and fleetkey.e2e.online the one that is
 * connected). Not one of the unit CTests: it needs the server.
 */
class FleetkeyE2ETest {
    private static final Duration TIMEOUT = Duration.ofSeconds(20);
    /** Every token this run saw, for the log check at the end. */
    private static final List<String> SEEN = Collections.synchronizedList(new ArrayList<>());
    private static URI base;
    private static Path dir;
    private static char[] password;
    private static X509Certificate root;
    private static Fixture.LogCapture log;

    @BeforeAll
    static void setUp() throws Exception {
        base = URI.create(required("fleetkey.e2e.base"));
        dir = Paths.get(required("fleetkey.e2e.dir"));
        String pw = Files.readAllLines(dir.resolve("pw"), StandardCharsets.UTF_8).get(0);
        password = pw.toCharArray();
        try (InputStream in = Files.newInputStream(dir.resolve("pki/root.crt.pem"))) {
            root = MtlsCredentialStore.readCertificate(in);
        }
        log = new Fixture.LogCapture();
    }

    private static String required(String p) {
        String v = System.getProperty(p);
        if (v == null) {
            throw new IllegalStateException("-D" + p + " missing: run tests/integration/"
                                            + "mobile_e2e.sh");
        }
        return v;
    }

    private static FleetkeyClient client(String bundle, Clock clock) throws Exception {
        MtlsCredentialStore creds =
            MtlsCredentialStore.load(Files.readAllBytes(dir.resolve(bundle)), password, root,
                                     MtlsCredentialStore.ANY_PLATFORM, Clock.systemUTC());
        return new FleetkeyClient(base, creds, clock, TIMEOUT);
    }

    private static FileTokenStore store(String name) throws Exception {
        Path p = Files.createDirectories(dir.resolve("stores")).resolve(name);
        return FileTokenStore.withPassphrase(p, "e2e store key".toCharArray(),
                                             FileTokenStore.MIN_ITERATIONS);
    }

    private static TokenSet seen(TokenSet t) {
        SEEN.add(t.accessToken());
        if (t.refreshToken() != null) {
            SEEN.add(t.refreshToken());
        }
        return t;
    }

    @Test
    void connectHelloAndListDevices() throws Exception {
        FleetkeyClient alice = client("alice.p12", Clock.systemUTC());
        TokenRefresher r = new TokenRefresher(alice, store("alice-1.bin"), Clock.systemUTC());
        TokenSet t = seen(r.tokens());
        assertEquals(Duration.ofHours(24), Duration.between(t.obtainedAt(), t.expiresAt()));
        assertEquals(Set.of("fleet:read", "robot:command"), Set.of(t.scope().split(" ")));
        assertEquals(t.obtainedAt().plus(Duration.ofHours(12)), r.refreshAt(t));

        Map<String, Object> who = alice.getJson("/api/whoami", t.accessToken());
        assertEquals("alice", who.get("sub"));
        assertEquals("mobile", who.get("kind"));

        try (FleetSession s = alice.connect(r.accessToken())) {
            Map<String, Object> welcome = s.hello("1.0.0");
            assertEquals("mobile", welcome.get("client"));
            assertEquals("alice", welcome.get("sub"));
            assertTrue(((String)welcome.get("scope")).contains("fleet:read"));
            List<Object> devices = s.listDevices();
            Set<String> ids = new HashSet<>();
            String online = System.getProperty("fleetkey.e2e.online", "");
            boolean sawOnline = false;
            for (Object o : devices) {
                @SuppressWarnings("unchecked") Map<String, Object> d = (Map<String, Object>)o;
                ids.add((String)d.get("device_id"));
                if (d.get("device_id").equals(online)) {
                    sawOnline = Boolean.TRUE.equals(d.get("online"));
                }
            }
            Set<String> want =
                new HashSet<>(List.of(System.getProperty("fleetkey.e2e.devices", "").split(",")));
            assertEquals(want, ids);
            assertTrue(online.isEmpty() || sawOnline, online + " should be online");
            s.ping();
            assertEquals(-1, s.closeCode());
        }
    }

    @Test
    void refreshAtTheLeadRotatesAndASpentRefreshTokenKillsTheFamily() throws Exception {
        Fixture.MutableClock clock = new Fixture.MutableClock(Clock.systemUTC().instant());
        FleetkeyClient alice = client("alice.p12", clock);
        TokenRefresher r = new TokenRefresher(alice, store("alice-2.bin"), clock);
        TokenSet first = seen(r.tokens());
        clock.advance(Duration.ofHours(12).minusSeconds(1));
        assertEquals(first.accessToken(), r.accessToken());
        clock.advance(Duration.ofSeconds(1));
        TokenSet second = seen(r.tokens());
        assertNotEquals(first.accessToken(), second.accessToken());
        assertNotEquals(first.refreshToken(), second.refreshToken());
        assertEquals("alice", alice.getJson("/api/whoami", second.accessToken()).get("sub"));
        /* RFC 6749 10.4 / the contract: reusing the spent refresh token revokes the family. */
        OAuthException e =
            assertThrows(OAuthException.class, () -> alice.refresh(first.refreshToken()));
        assertEquals("invalid_grant", e.error());
        Fixture.assertNoSecretIn(e, first.refreshToken());
        OAuthException gone = assertThrows(
            OAuthException.class, () -> alice.getJson("/api/whoami", second.accessToken()));
        assertEquals(401, gone.status());
    }

    @Test
    void aTokenPresentedWithAnotherCertificateIsRefused() throws Exception {
        FleetkeyClient alice = client("alice.p12", Clock.systemUTC());
        FleetkeyClient bob = client("bob.p12", Clock.systemUTC());
        TokenSet t = seen(alice.clientCredentials(null));
        FleetSession.Refused e =
            assertThrows(FleetSession.Refused.class, () -> bob.connect(t.accessToken()));
        assertEquals(401, e.status());
        OAuthException api =
            assertThrows(OAuthException.class, () -> bob.getJson("/api/whoami", t.accessToken()));
        assertEquals(401, api.status());
        /* Nor can bob's certificate spend alice's refresh token. */
        assertThrows(OAuthException.class, () -> bob.refresh(t.refreshToken()));
        /* Still fine with its own certificate. */
        try (FleetSession s = alice.connect(t.accessToken())) {
            assertEquals("alice", s.hello("1.0.0").get("sub"));
        }
    }

    @Test
    void revokedTokenClosesTheChannelAndIsRefused() throws Exception {
        FleetkeyClient alice = client("alice.p12", Clock.systemUTC());
        FileTokenStore st = store("alice-3.bin");
        TokenRefresher r = new TokenRefresher(alice, st, Clock.systemUTC());
        TokenSet t = seen(r.tokens());
        try (FleetSession s = alice.connect(t.accessToken())) {
            s.hello("1.0.0");
            r.revoke();
            assertFalse(Files.exists(st.path()), "storage cleared");
            /* The contract says within 2 s; the bound here is generous for a loaded machine. */
            assertEquals(1008, s.awaitClose(Duration.ofSeconds(15)));
        }
        FleetSession.Refused e =
            assertThrows(FleetSession.Refused.class, () -> alice.connect(t.accessToken()));
        assertEquals(401, e.status());
        assertThrows(OAuthException.class, () -> alice.getJson("/api/whoami", t.accessToken()));
        assertThrows(OAuthException.class, () -> alice.refresh(t.refreshToken()));
        /* Re-provisioned phone (same bundle here): a fresh grant works again. */
        assertNotEquals(t.accessToken(), seen(r.tokens()).accessToken());
    }

    @Test
    void noTokenOrPasswordInTheServerLog() throws Exception {
        /* Obtain one, so the check below always has something to look for. */
        seen(client("alice.p12", Clock.systemUTC()).clientCredentials(null));
        assertNoSecretInServerLog();
    }

    private static void assertNoSecretInServerLog() throws Exception {
        String srv =
            Files.readString(Paths.get(required("fleetkey.e2e.serverlog")), StandardCharsets.UTF_8);
        assertTrue(srv.length() > 0, "server log is empty");
        List<String> secrets = new ArrayList<>(SEEN);
        secrets.add(new String(password));
        for (String s : secrets) {
            assertFalse(srv.contains(s), "a token or the password is in the server log");
            /* A JWT's signature alone identifies it; look for that too. */
            int dot = s.lastIndexOf('.');
            if (dot > 0 && s.length() - dot > 20) {
                assertFalse(srv.contains(s.substring(dot + 1)), "a JWT signature is logged");
            }
        }
    }

    @AfterAll
    static void noSecretInAnyLog() throws Exception {
        log.close();
        log.assertNoSecret(SEEN.toArray(new String[0]));
        log.assertNoSecret(new String(password), "e2e store key");
        assertTrue(log.snapshot().size() > 5, "the client logged its steps");
        assertNoSecretInServerLog();
    }
}
