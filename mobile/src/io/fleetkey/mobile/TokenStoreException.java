package io.fleetkey.mobile;

/**
 * A token store failure. {@link Tampered} means the stored bytes did not authenticate (modified,
 * truncated, or a wrong passphrase/key): the store was left untouched.
 */
public class TokenStoreException extends Exception {
    private static final long serialVersionUID = 1L;

    public TokenStoreException(String message, Throwable cause) {
        super(message, cause);
    }

    public static final class Tampered extends TokenStoreException {
        private static final long serialVersionUID = 1L;

        Tampered(String message) {
            super(message, null);
        }
    }
}
