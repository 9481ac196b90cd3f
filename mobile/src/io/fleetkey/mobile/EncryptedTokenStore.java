package io.fleetkey.mobile;

import java.util.Optional;

/**
 * Where the phone keeps its OAuth2 tokens, encrypted at rest. On Android this is
 * EncryptedSharedPreferences (keys in the AndroidKeyStore); {@link FileTokenStore} is the JVM
 * implementation used by the tests and by Linux clients. Implementations must be thread-safe,
 * make {@link #save} durable and atomic (a crash leaves the old or the new set, never a mix),
 * and must never put a token in an exception message or a log line.
 */
public interface EncryptedTokenStore {
    /**
     * The stored set, or empty when nothing is stored. Throws TokenStoreException when the stored
     * data cannot be authenticated (tampered, or the wrong key); the stored data is then left as
     * it is, so nothing is lost by asking.
     */
    Optional<TokenSet> load() throws TokenStoreException;

    /** Replaces the stored set; when this returns, the new set survives a crash. */
    void save(TokenSet tokens) throws TokenStoreException;

    /** Forgets the stored set (revocation, logout). Idempotent. */
    void clear() throws TokenStoreException;
}
