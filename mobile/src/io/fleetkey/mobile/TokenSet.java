package io.fleetkey.mobile;

import java.time.Instant;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * One OAuth2 grant as the phone keeps it: the access token (a JWT), the refresh token, when the
 * access token was obtained and when it expires (both from the phone's clock: the server's
 * expires_in added to the time of receipt), and the granted scope. Immutable; toString never
 * shows a token, so logging a TokenSet leaks nothing.
 */
public final class TokenSet {
    private final String accessToken;
    private final String refreshToken;
    private final Instant obtainedAt;
    private final Instant expiresAt;
    private final String scope;

    public TokenSet(String accessToken, String refreshToken, Instant obtainedAt, Instant expiresAt,
                    String scope) {
        if (accessToken == null || accessToken.isEmpty() || obtainedAt == null ||
            expiresAt == null || expiresAt.isBefore(obtainedAt)) {
            throw new IllegalArgumentException(
                "a token set needs a token and obtainedAt <= expiresAt");
        }
        this.accessToken = accessToken;
        this.refreshToken = refreshToken;
        this.obtainedAt = obtainedAt;
        this.expiresAt = expiresAt;
        this.scope = scope == null ? "" : scope;
    }

    public String accessToken() {
        return accessToken;
    }

    /** The refresh token, or null when the server gave none. */
    public String refreshToken() {
        return refreshToken;
    }

    public Instant obtainedAt() {
        return obtainedAt;
    }

    public Instant expiresAt() {
        return expiresAt;
    }

    public String scope() {
        return scope;
    }

    /**
     * The stores' plaintext form (JSON, with both tokens): for an {@link EncryptedTokenStore}
     * implementation to encrypt, never to log.
     */
    public String toJson() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("access_token", accessToken);
        if (refreshToken != null) {
            m.put("refresh_token", refreshToken);
        }
        m.put("obtained_at", obtainedAt.getEpochSecond());
        m.put("expires_at", expiresAt.getEpochSecond());
        m.put("scope", scope);
        return Json.write(m);
    }

    /** Parses {@link #toJson()}'s output; JsonException names the bad member, not its value. */
    public static TokenSet fromJson(String json) throws Json.JsonException {
        Map<String, Object> m = Json.parseObject(json);
        String rt = m.containsKey("refresh_token") ? Json.string(m, "refresh_token") : null;
        Instant obtained = Instant.ofEpochSecond(Json.integer(m, "obtained_at"));
        Instant expires = Instant.ofEpochSecond(Json.integer(m, "expires_at"));
        if (expires.isBefore(obtained)) {
            throw new Json.JsonException(0, "expires_at before obtained_at");
        }
        return new TokenSet(Json.string(m, "access_token"), rt, obtained, expires,
                            Json.string(m, "scope"));
    }

    @Override
    public String toString() {
        return "TokenSet{scope=" + scope + ", obtainedAt=" + obtainedAt +
            ", expiresAt=" + expiresAt + ", refresh=" + (refreshToken != null) + "}";
    }
}
