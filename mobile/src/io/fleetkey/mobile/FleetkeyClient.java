package io.fleetkey.mobile;

import java.io.IOException;
import java.io.InputStream;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.WebSocketHandshakeException;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.logging.Logger;

/**
 * The phone's side of the control plane (docs/mobile.md, the wire contract in issue 16): OAuth2
 * token requests (client_credentials, refresh_token; RFC 6749) and revocation (RFC 7009) over
 * HTTPS, and the wss channel ({@code /ws}, subprotocol fleetkey.v1) with a bearer token, all on
 * one mTLS {@link HttpClient} built from an {@link MtlsCredentialStore}. The certificate is what
 * binds a token to this phone (RFC 8705): the server refuses a token presented with another one.
 * client_id is the name in the certificate. Responses are read up to {@link #MAX_BODY} bytes and
 * parsed with the strict {@link Json}. Thread-safe; tokens never appear in messages or logs.
 */
public final class FleetkeyClient implements TokenSource {
    public static final int MAX_BODY = 64 * 1024;
    public static final String SUBPROTOCOL = "fleetkey.v1";
    private static final Logger LOG = Logger.getLogger("io.fleetkey.mobile");

    private final URI base;
    private final String clientId;
    private final Clock clock;
    private final Duration timeout;
    private final HttpClient http;

    /**
     * base is the control plane, e.g. https://fleet.example.com:8443 (its host must match the
     * server certificate); every request and the wss handshake time out after timeout.
     */
    public FleetkeyClient(URI base, MtlsCredentialStore creds, Clock clock, Duration timeout)
        throws GeneralSecurityException {
        if (!"https".equals(base.getScheme()) || base.getHost() == null) {
            throw new IllegalArgumentException("base must be an https:// URI with a host");
        }
        this.base = base;
        this.clientId = creds.clientName();
        this.clock = clock;
        this.timeout = timeout;
        this.http = HttpClient.newBuilder()
                        .sslContext(creds.sslContext())
                        .version(HttpClient.Version.HTTP_1_1)
                        .connectTimeout(timeout)
                        .followRedirects(HttpClient.Redirect.NEVER)
                        .build();
    }

    public String clientId() {
        return clientId;
    }

    @Override
    public TokenSet clientCredentials(String scope) throws IOException, OAuthException {
        Map<String, String> form = new LinkedHashMap<>();
        form.put("grant_type", "client_credentials");
        form.put("client_id", clientId);
        if (scope != null) {
            form.put("scope", scope);
        }
        return tokenRequest(form, "client_credentials");
    }

    @Override
    public TokenSet refresh(String refreshToken) throws IOException, OAuthException {
        Map<String, String> form = new LinkedHashMap<>();
        form.put("grant_type", "refresh_token");
        form.put("refresh_token", refreshToken);
        form.put("client_id", clientId);
        return tokenRequest(form, "refresh_token");
    }

    @Override
    public void revoke(String token, String hint) throws IOException, OAuthException {
        Map<String, String> form = new LinkedHashMap<>();
        form.put("token", token);
        form.put("token_type_hint", hint);
        Reply r = post("/oauth/revoke", form);
        /* RFC 7009 2.2: 200 also for an unknown token, so anything else is an error. */
        if (r.status != 200) {
            throw error(r);
        }
        LOG.info(() -> "oauth: revoked the " + hint + " of " + clientId);
    }

    /** GET path (e.g. /api/whoami) with the bearer token; the JSON object answered. */
    public Map<String, Object> getJson(String path, String accessToken)
        throws IOException, OAuthException {
        HttpRequest req = HttpRequest.newBuilder(base.resolve(path))
                              .timeout(timeout)
                              .header("Authorization", "Bearer " + accessToken)
                              .header("Accept", "application/json")
                              .GET()
                              .build();
        Reply r = send(req);
        if (r.status != 200) {
            throw error(r);
        }
        try {
            return Json.parseObject(r.body);
        } catch (Json.JsonException e) {
            throw new OAuthException(r.status, "bad_response", path + ": " + e.getMessage());
        }
    }

    /**
     * Opens the wss channel with accessToken. Throws {@link FleetSession.Refused} (with the HTTP
     * status, 401 for a missing, revoked or foreign token) when the server refuses the upgrade.
     */
    public FleetSession connect(String accessToken) throws IOException {
        URI ws = URI.create("wss://" + base.getRawAuthority() + "/ws");
        FleetSession session = new FleetSession(timeout);
        try {
            http.newWebSocketBuilder()
                .subprotocols(SUBPROTOCOL)
                .connectTimeout(timeout)
                .header("Authorization", "Bearer " + accessToken)
                .buildAsync(ws, session.listener())
                .get(timeout.toMillis() + 1000, TimeUnit.MILLISECONDS);
        } catch (ExecutionException e) {
            if (e.getCause() instanceof WebSocketHandshakeException) {
                int status = ((WebSocketHandshakeException)e.getCause()).getResponse().statusCode();
                LOG.info(() -> "wss: " + ws + " refused the upgrade: HTTP " + status);
                throw new FleetSession.Refused(status);
            }
            throw new IOException("wss: " + ws + ": " + e.getCause(), e.getCause());
        } catch (TimeoutException e) {
            throw new IOException("wss: " + ws + ": no handshake within " + timeout, e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("wss: interrupted", e);
        }
        LOG.info(() -> "wss: connected to " + ws + " as " + clientId);
        return session;
    }

    private TokenSet tokenRequest(Map<String, String> form, String grant)
        throws IOException, OAuthException {
        Instant sent = clock.instant();
        Reply r = post("/oauth/token", form);
        if (r.status != 200) {
            OAuthException e = error(r);
            LOG.info(() -> "oauth: " + grant + " refused: HTTP " + r.status + " " + e.error());
            throw e;
        }
        try {
            Map<String, Object> m = Json.parseObject(r.body);
            String type = Json.string(m, "token_type");
            if (!type.equalsIgnoreCase("Bearer")) {
                throw new OAuthException(r.status, "bad_response", "token_type is not Bearer");
            }
            long expiresIn = Json.integer(m, "expires_in");
            if (expiresIn <= 0 || expiresIn > 366L * 86400) {
                throw new OAuthException(r.status, "bad_response", "expires_in out of range");
            }
            String rt = m.containsKey("refresh_token") ? Json.string(m, "refresh_token") : null;
            String scope = m.containsKey("scope") ? Json.string(m, "scope") : "";
            /* Counted from when the request left: the token cannot outlive the server's view. */
            TokenSet t = new TokenSet(Json.string(m, "access_token"), rt, sent,
                                      sent.plusSeconds(expiresIn), scope);
            LOG.info(() -> "oauth: " + grant + " for " + clientId + ": " + t);
            return t;
        } catch (Json.JsonException e) {
            throw new OAuthException(r.status, "bad_response", e.getMessage());
        }
    }

    private Reply post(String path, Map<String, String> form) throws IOException {
        StringBuilder body = new StringBuilder();
        for (Map.Entry<String, String> e : form.entrySet()) {
            if (body.length() > 0) {
                body.append('&');
            }
            body.append(URLEncoder.encode(e.getKey(), StandardCharsets.UTF_8))
                .append('=')
                .append(URLEncoder.encode(e.getValue(), StandardCharsets.UTF_8));
        }
        HttpRequest req = HttpRequest.newBuilder(base.resolve(path))
                              .timeout(timeout)
                              .header("Content-Type", "application/x-www-form-urlencoded")
                              .header("Accept", "application/json")
                              .POST(HttpRequest.BodyPublishers.ofString(body.toString()))
                              .build();
        return send(req);
    }

    private static final class Reply {
        final int status;
        final String body;

        Reply(int status, String body) {
            this.status = status;
            this.body = body;
        }
    }

    private Reply send(HttpRequest req) throws IOException {
        HttpResponse<InputStream> resp;
        try {
            resp = http.send(req, HttpResponse.BodyHandlers.ofInputStream());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted", e);
        }
        try (InputStream in = resp.body()) {
            byte[] b = in.readNBytes(MAX_BODY + 1);
            if (b.length > MAX_BODY) {
                throw new IOException(req.uri().getPath() + ": response larger than " + MAX_BODY +
                                      " bytes");
            }
            return new Reply(resp.statusCode(), new String(b, StandardCharsets.UTF_8));
        }
    }

    private static OAuthException error(Reply r) {
        String code = "http_" + r.status;
        String desc = null;
        try {
            Map<String, Object> m = Json.parseObject(r.body);
            code = Json.string(m, "error");
            if (m.get("error_description") instanceof String) {
                desc = (String)m.get("error_description");
            }
        } catch (Json.JsonException e) {
            /* Not an RFC 6749 error body: the status says enough. */
        }
        return new OAuthException(r.status, code, desc);
    }
}
