package io.fleetkey.mobile;

import java.security.GeneralSecurityException;

/**
 * Why a PKCS#12 bundle could not become an mTLS credential. Each cause has its own subclass so an
 * app can tell the user what to do (re-enter the password, re-provision, ask for a legacy
 * bundle). Messages name the bundle and the problem, never the password or key material.
 */
public class CredentialException extends GeneralSecurityException {
    private static final long serialVersionUID = 1L;

    public CredentialException(String message) {
        super(message);
    }

    public CredentialException(String message, Throwable cause) {
        super(message, cause);
    }

    /** The password does not open the bundle (MAC or decryption failed). */
    public static final class WrongPassword extends CredentialException {
        private static final long serialVersionUID = 1L;

        WrongPassword(String message, Throwable cause) {
            super(message, cause);
        }
    }

    /** The client certificate's notAfter has passed: re-provision a new bundle. */
    public static final class Expired extends CredentialException {
        private static final long serialVersionUID = 1L;

        Expired(String message) {
            super(message);
        }
    }

    /** The client certificate's notBefore lies ahead (or the phone's clock is wrong). */
    public static final class NotYetValid extends CredentialException {
        private static final long serialVersionUID = 1L;

        NotYetValid(String message) {
            super(message);
        }
    }

    /**
     * The bundle uses algorithms this platform cannot read (PBES2/AES on Android before 12):
     * re-export it with `provision-keys export-p12 --legacy`.
     */
    public static final class LegacyBundleRequired extends CredentialException {
        private static final long serialVersionUID = 1L;
        private final transient Pkcs12Profile profile;

        LegacyBundleRequired(String message, Pkcs12Profile profile) {
            super(message);
            this.profile = profile;
        }

        public Pkcs12Profile profile() {
            return profile;
        }
    }

    /** Not a PKCS#12 bundle, damaged, or without exactly one key entry with its certificate. */
    public static final class Malformed extends CredentialException {
        private static final long serialVersionUID = 1L;

        Malformed(String message, Throwable cause) {
            super(message, cause);
        }
    }
}
