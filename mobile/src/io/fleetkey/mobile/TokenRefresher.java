package io.fleetkey.mobile;

import java.io.IOException;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.util.Optional;
import java.util.concurrent.locks.ReentrantLock;
import java.util.logging.Logger;

/**
 * Keeps a valid access token (seed 000: "refreshed at least 12 hours before expiry"). A token is
 * refreshed once {@code now >= expiresAt - lead}, with lead 12 h by default; when a token lives
 * shorter than twice the lead (a test server, a short token_lifetime) the lead shrinks to half
 * its lifetime, so that a fresh token is not refreshed on every call. Refreshes are single-flight:
 * however many threads ask at once, one token request goes out and the others get its result.
 * The new token set is saved in the {@link EncryptedTokenStore} before any caller sees it, so a
 * crash never loses a token that was handed out (the refresh token it replaced is spent).
 *
 * <p>Refresh order: the refresh_token grant; if the server refuses it (invalid_grant: spent,
 * expired, revoked family) the client_credentials grant, which the mTLS certificate alone
 * allows. When the endpoint is unreachable and the current token has not yet expired, the
 * current token is returned and the next call tries again. Thread-safe.
 */
public final class TokenRefresher {
    public static final Duration DEFAULT_LEAD = Duration.ofHours(12);
    private static final Logger LOG = Logger.getLogger("io.fleetkey.mobile");

    private final TokenSource source;
    private final EncryptedTokenStore store;
    private final Clock clock;
    private final Duration lead;
    private final String scope;
    /* Held across the token request: this is what makes refreshes single-flight. */
    private final ReentrantLock lock = new ReentrantLock();
    private volatile TokenSet current;

    /**
     * source and store are borrowed for the refresher's life; scope is what client_credentials
     * asks for (null: the server's default); lead must be positive.
     */
    public TokenRefresher(TokenSource source, EncryptedTokenStore store, Clock clock, Duration lead,
                          String scope) {
        if (source == null || store == null || clock == null || lead == null || lead.isNegative() ||
            lead.isZero()) {
            throw new IllegalArgumentException("source, store, clock and a positive lead needed");
        }
        this.source = source;
        this.store = store;
        this.clock = clock;
        this.lead = lead;
        this.scope = scope;
    }

    public TokenRefresher(TokenSource source, EncryptedTokenStore store, Clock clock) {
        this(source, store, clock, DEFAULT_LEAD, null);
    }

    /** When t should be refreshed: expiresAt - min(lead, lifetime / 2). */
    public Instant refreshAt(TokenSet t) {
        Duration life = Duration.between(t.obtainedAt(), t.expiresAt());
        Duration l = lead.compareTo(life.dividedBy(2)) <= 0 ? lead : life.dividedBy(2);
        return t.expiresAt().minus(l);
    }

    private boolean fresh(TokenSet t, Instant now) {
        return t != null && now.isBefore(refreshAt(t));
    }

    /**
     * A valid access token, refreshing (and persisting) first when due. Throws
     * TokenStoreException when the store cannot be read or written (a tampered store is not
     * overwritten: nothing is lost), OAuthException when the server refuses every grant.
     */
    public String accessToken() throws IOException, OAuthException, TokenStoreException {
        return tokens().accessToken();
    }

    /** The current token set (see {@link #accessToken()}). */
    public TokenSet tokens() throws IOException, OAuthException, TokenStoreException {
        TokenSet t = current;
        if (fresh(t, clock.instant())) {
            return t;
        }
        lock.lock();
        try {
            /* Whoever held the lock before us may have refreshed already. */
            t = current;
            if (t == null) {
                t = store.load().orElse(null);
                current = t;
            }
            Instant now = clock.instant();
            if (fresh(t, now)) {
                return t;
            }
            TokenSet next;
            try {
                next = obtain(t);
            } catch (IOException e) {
                if (t != null && now.isBefore(t.expiresAt())) {
                    Instant until = t.expiresAt();
                    LOG.warning(()
                                    -> "oauth: refresh failed (" + e.getClass().getSimpleName() +
                                           "); the current token is valid until " + until);
                    return t;
                }
                throw e;
            }
            /* Persist before use: a token handed out must survive a crash. */
            store.save(next);
            current = next;
            TokenSet saved = next;
            LOG.info(() -> "oauth: new token saved, refresh due at " + refreshAt(saved));
            return next;
        } finally {
            lock.unlock();
        }
    }

    private TokenSet obtain(TokenSet old) throws IOException, OAuthException {
        if (old != null && old.refreshToken() != null) {
            try {
                return source.refresh(old.refreshToken());
            } catch (OAuthException e) {
                if (!"invalid_grant".equals(e.error())) {
                    throw e;
                }
                LOG.info("oauth: refresh token refused (invalid_grant); client_credentials");
            }
        }
        return source.clientCredentials(scope);
    }

    /**
     * Revokes the stored grant at the server (the refresh token, which revokes its family and the
     * access tokens issued from it, then the access token) and clears the store, also when the
     * server cannot be reached: the phone forgets its tokens either way. The server's error, if
     * any, is thrown after the store is cleared. Re-provisioning the PKCS#12 is the app's part.
     */
    public void revoke() throws IOException, OAuthException, TokenStoreException {
        lock.lock();
        try {
            TokenSet t = current;
            current = null;
            if (t == null) {
                /* A store that does not authenticate is cleared all the same: the user asked
                 * to forget the grant. */
                Optional<TokenSet> stored = store.load();
                t = stored.orElse(null);
            }
            if (t != null) {
                if (t.refreshToken() != null) {
                    source.revoke(t.refreshToken(), "refresh_token");
                }
                source.revoke(t.accessToken(), "access_token");
            }
        } finally {
            try {
                store.clear();
            } finally {
                lock.unlock();
            }
        }
    }
}
