package io.fleetkey.mobile;

import com.sun.net.httpserver.HttpsConfigurator;
import com.sun.net.httpserver.HttpsExchange;
import com.sun.net.httpserver.HttpsParameters;
import com.sun.net.httpserver.HttpsServer;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;

/**
 * A small token endpoint for the unit tests of TokenRefresher and FleetkeyClient: a real HTTPS
 * server (the JDK's) on a port the OS picks, requiring a client certificate of the fleet, that
 * answers the /oauth/token and /oauth/revoke requests of the issue 16 contract (one-time refresh
 * tokens, invalid_grant for spent ones) and counts them. The end-to-end test runs the same client
 * against the real fleetkey-server.
 */
final class TestTokenServer implements AutoCloseable {
    final AtomicInteger tokenRequests = new AtomicInteger();
    final List<String> grants = Collections.synchronizedList(new ArrayList<>());
    final List<String> revoked = Collections.synchronizedList(new ArrayList<>());
    /** Every token handed out, so tests can check none reached a log. */
    final List<String> issued = Collections.synchronizedList(new ArrayList<>());
    volatile long expiresIn = 86400;
    volatile boolean refuseRefresh;
    /** When set, token requests wait (bounded) for it: lets a test pile up callers. */
    volatile CountDownLatch gate;
    volatile String lastClientCn;
    private final Set<String> liveRefresh = Collections.synchronizedSet(new HashSet<>());
    private final AtomicInteger serial = new AtomicInteger();
    private final HttpsServer server;
    private final ExecutorService pool = Executors.newCachedThreadPool();

    TestTokenServer(String serverP12) throws Exception {
        SSLContext ctx = Fixture.serverContext(serverP12);
        server = HttpsServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
        server.setHttpsConfigurator(new HttpsConfigurator(ctx) {
            @Override
            public void configure(HttpsParameters params) {
                SSLParameters p = ctx.getDefaultSSLParameters();
                p.setNeedClientAuth(true);
                params.setSSLParameters(p);
            }
        });
        server.setExecutor(pool);
        server.createContext("/oauth/token", ex -> handle((HttpsExchange)ex, true));
        server.createContext("/oauth/revoke", ex -> handle((HttpsExchange)ex, false));
        server.start();
    }

    URI base() {
        return URI.create("https://127.0.0.1:" + server.getAddress().getPort());
    }

    private static Map<String, String> form(String body) {
        Map<String, String> m = new HashMap<>();
        for (String kv : body.split("&")) {
            int eq = kv.indexOf('=');
            if (eq > 0) {
                m.put(URLDecoder.decode(kv.substring(0, eq), StandardCharsets.UTF_8),
                      URLDecoder.decode(kv.substring(eq + 1), StandardCharsets.UTF_8));
            }
        }
        return m;
    }

    private void handle(HttpsExchange ex, boolean token) throws IOException {
        try {
            X509Certificate peer = (X509Certificate)ex.getSSLSession().getPeerCertificates()[0];
            lastClientCn = peer.getSubjectX500Principal().getName();
            Map<String, String> f =
                form(new String(ex.getRequestBody().readNBytes(65536), StandardCharsets.UTF_8));
            if (!token) {
                revoked.add(f.get("token"));
                liveRefresh.remove(f.get("token"));
                reply(ex, 200, "");
                return;
            }
            tokenRequests.incrementAndGet();
            CountDownLatch g = gate;
            if (g != null) {
                g.await(20, TimeUnit.SECONDS);
            }
            String grant = f.get("grant_type");
            grants.add(grant);
            if ("refresh_token".equals(grant) &&
                (refuseRefresh || !liveRefresh.remove(f.get("refresh_token")))) {
                reply(ex, 400, "{\"error\":\"invalid_grant\",\"error_description\":\"spent\"}");
                return;
            }
            if (!"refresh_token".equals(grant) && !"client_credentials".equals(grant)) {
                reply(ex, 400, "{\"error\":\"unsupported_grant_type\"}");
                return;
            }
            if ("fleet:write".equals(f.get("scope"))) {
                reply(ex, 400, "{\"error\":\"invalid_scope\"}");
                return;
            }
            int n = serial.incrementAndGet();
            String at = "eyJhbGciOiJFUzI1NiJ9.at-" + n + "-secret.sig";
            String rt = "rt-" + n + "-secret";
            issued.add(at);
            issued.add(rt);
            liveRefresh.add(rt);
            reply(ex, 200,
                  "{\"access_token\":\"" + at + "\",\"token_type\":\"Bearer\","
                      + "\"expires_in\":" + expiresIn + ",\"refresh_token\":\"" + rt +
                      "\",\"scope\":\"fleet:read robot:command\"}");
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } finally {
            ex.close();
        }
    }

    private static void reply(HttpsExchange ex, int status, String body) throws IOException {
        byte[] b = body.getBytes(StandardCharsets.UTF_8);
        ex.getResponseHeaders().add("Content-Type", "application/json");
        ex.getResponseHeaders().add("Cache-Control", "no-store");
        ex.sendResponseHeaders(status, b.length == 0 ? -1 : b.length);
        if (b.length > 0) {
            ex.getResponseBody().write(b);
        }
    }

    @Override
    public void close() {
        server.stop(0);
        pool.shutdownNow();
    }
}
