package io.fleetkey.mobile;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * TokenRefresher with FleetkeyClient over real mTLS HTTPS to TestTokenServer, an injected clock
 * and a real FileTokenStore. Every test also checks that no token or password reached a log.
 */
class TokenRefresherTest {
    static final Instant T0 = Instant.parse("2026-03-01T08:00:00Z");
    private TestTokenServer server;
    private Fixture.MutableClock clock;
    private FleetkeyClient client;
    private Path storePath;
    private FileTokenStore store;
    private Fixture.LogCapture log;

    @BeforeEach
    void start() throws Exception {
        log = new Fixture.LogCapture();
        server = new TestTokenServer("server.p12");
        clock = new Fixture.MutableClock(T0);
        client = new FleetkeyClient(server.base(), Fixture.load("alice.p12"), clock,
                                    Duration.ofSeconds(20));
        Path dir = Files.createDirectories(Fixture.dir().resolve("stores"));
        storePath = Files.createTempDirectory(dir, "r").resolve("tokens.bin");
        store = FileTokenStore.withPassphrase(storePath, "app key".toCharArray(),
                                              FileTokenStore.MIN_ITERATIONS);
    }

    @AfterEach
    void stop() {
        server.close();
        log.close();
        log.assertNoSecret(server.issued.toArray(new String[0]));
        log.assertNoSecret(Fixture.PASSWORD, "app key");
    }

    @Test
    void refreshesExactlyAtTheDefaultLead() throws Exception {
        TokenRefresher r = new TokenRefresher(client, store, clock);
        String first = r.accessToken();
        assertEquals(List.of("client_credentials"), server.grants);
        assertTrue(server.lastClientCn.contains("CN=alice"), server.lastClientCn);
        /* 24 h token: 12 h lead, so it is reused until 12:00:00 later and not a second longer. */
        clock.set(T0.plus(Duration.ofHours(12)).minusSeconds(1));
        assertEquals(first, r.accessToken());
        assertEquals(1, server.tokenRequests.get());
        clock.set(T0.plus(Duration.ofHours(12)));
        String second = r.accessToken();
        assertNotEquals(first, second);
        assertEquals(List.of("client_credentials", "refresh_token"), server.grants);
        /* Persisted: a restarted app (new refresher, new store object) sees the new token. */
        FileTokenStore again = FileTokenStore.withPassphrase(storePath, "app key".toCharArray(),
                                                             FileTokenStore.MIN_ITERATIONS);
        TokenRefresher restarted = new TokenRefresher(client, again, clock);
        assertEquals(second, restarted.accessToken());
        assertEquals(2, server.tokenRequests.get());
    }

    @Test
    void leadIsConfigurable() throws Exception {
        TokenRefresher r = new TokenRefresher(client, store, clock, Duration.ofHours(1), null);
        String first = r.accessToken();
        clock.set(T0.plus(Duration.ofHours(23)).minusMillis(1));
        assertEquals(first, r.accessToken());
        clock.set(T0.plus(Duration.ofHours(23)));
        assertNotEquals(first, r.accessToken());
        assertEquals(2, server.tokenRequests.get());
    }

    @Test
    void shortTokensRefreshAtHalfTheirLife() throws Exception {
        server.expiresIn = 3600;
        TokenRefresher r = new TokenRefresher(client, store, clock);
        String first = r.accessToken();
        assertEquals(T0.plusSeconds(1800), r.refreshAt(r.tokens()));
        clock.set(T0.plusSeconds(1799));
        assertEquals(first, r.accessToken());
        clock.set(T0.plusSeconds(1800));
        assertNotEquals(first, r.accessToken());
    }

    @Test
    void twentyConcurrentCallersMakeOneRequest() throws Exception {
        TokenRefresher r = new TokenRefresher(client, store, clock);
        CountDownLatch gate = new CountDownLatch(1);
        server.gate = gate;
        int n = 20;
        CyclicBarrier go = new CyclicBarrier(n);
        ConcurrentHashMap<String, Integer> got = new ConcurrentHashMap<>();
        List<Throwable> errors = new ArrayList<>();
        List<Thread> threads = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            Thread t = new Thread(() -> {
                try {
                    go.await(20, TimeUnit.SECONDS);
                    got.merge(r.accessToken(), 1, Integer::sum);
                } catch (Throwable e) {
                    synchronized (errors) {
                        errors.add(e);
                    }
                }
            });
            threads.add(t);
            t.start();
        }
        /* Hold the one request until the other 19 callers are parked on the refresh: then a
         * second request could only come from a broken single-flight. Bounded wait. */
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        while (System.nanoTime() < deadline) {
            long parked = threads.stream()
                              .filter(t
                                      -> t.getState() == Thread.State.WAITING ||
                                             t.getState() == Thread.State.TIMED_WAITING)
                              .count();
            if (server.tokenRequests.get() == 1 && parked >= n - 1) {
                break;
            }
            Thread.sleep(5);
        }
        gate.countDown();
        for (Thread t : threads) {
            t.join(30_000);
            assertFalse(t.isAlive(), "a caller is stuck");
        }
        assertEquals(List.of(), errors);
        assertEquals(1, server.tokenRequests.get(), "exactly one token request");
        assertEquals(1, got.size(), "every caller got the same token");
        assertEquals(n, got.values().iterator().next());
        assertEquals(got.keySet().iterator().next(), store.load().orElseThrow().accessToken());
    }

    @Test
    void newTokenIsPersistedBeforeItIsReturned() throws Exception {
        /* A store whose disk is full: the refresher must not hand out a token it could not keep. */
        EncryptedTokenStore full = new EncryptedTokenStore() {
            @Override
            public Optional<TokenSet> load() {
                return Optional.empty();
            }

            @Override
            public void save(TokenSet tokens) throws TokenStoreException {
                throw new TokenStoreException("disk full", null);
            }

            @Override
            public void clear() {
            }
        };
        TokenRefresher r = new TokenRefresher(client, full, clock);
        TokenStoreException e = assertThrows(TokenStoreException.class, r::accessToken);
        assertEquals("disk full", e.getMessage());
        assertEquals(1, server.tokenRequests.get());
        /* And with a working store, what the caller gets is what is on disk. */
        TokenRefresher ok = new TokenRefresher(client, store, clock);
        assertTrue(store.load().isEmpty());
        String t = ok.accessToken();
        assertEquals(t, store.load().orElseThrow().accessToken());
    }

    @Test
    void tamperedStoreIsReportedAndNotOverwritten() throws Exception {
        TokenRefresher r = new TokenRefresher(client, store, clock);
        r.accessToken();
        byte[] b = Files.readAllBytes(storePath);
        b[b.length - 1] ^= 1;
        Files.write(storePath, b);
        TokenRefresher restarted =
            new TokenRefresher(client,
                               FileTokenStore.withPassphrase(storePath, "app key".toCharArray(),
                                                             FileTokenStore.MIN_ITERATIONS),
                               clock);
        assertThrows(TokenStoreException.Tampered.class, restarted::accessToken);
        assertArrayEquals(b, Files.readAllBytes(storePath));
        assertEquals(1, server.tokenRequests.get(), "no request made over a tampered store");
    }

    @Test
    void spentRefreshTokenFallsBackToClientCredentials() throws Exception {
        TokenRefresher r = new TokenRefresher(client, store, clock);
        r.accessToken();
        server.refuseRefresh = true;
        clock.advance(Duration.ofHours(13));
        r.accessToken();
        assertEquals(List.of("client_credentials", "refresh_token", "client_credentials"),
                     server.grants);
    }

    @Test
    void unreachableEndpointKeepsAStillValidToken() throws Exception {
        TokenRefresher r = new TokenRefresher(client, store, clock);
        String first = r.accessToken();
        server.close();
        clock.advance(Duration.ofHours(13));
        assertEquals(first, r.accessToken(), "valid for 11 more hours: used while offline");
        clock.advance(Duration.ofHours(12));
        assertThrows(java.io.IOException.class, r::accessToken);
    }

    @Test
    void revokeCallsTheServerAndClearsStorage() throws Exception {
        TokenRefresher r = new TokenRefresher(client, store, clock);
        TokenSet t = r.tokens();
        r.revoke();
        assertEquals(List.of(t.refreshToken(), t.accessToken()), server.revoked);
        assertFalse(Files.exists(storePath), "storage cleared");
        assertTrue(store.load().isEmpty());
        /* The next use starts over with the certificate. */
        assertNotEquals(t.accessToken(), r.accessToken());
        assertEquals("client_credentials", server.grants.get(server.grants.size() - 1));
    }

    @Test
    void revokeClearsStorageEvenWhenTheServerIsGone() throws Exception {
        TokenRefresher r = new TokenRefresher(client, store, clock);
        r.accessToken();
        server.close();
        assertThrows(java.io.IOException.class, r::revoke);
        assertFalse(Files.exists(storePath));
    }
}
