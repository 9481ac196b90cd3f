package io.fleetkey.mobile;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.NoSuchAlgorithmException;
import java.security.PrivateKey;
import java.security.UnrecoverableKeyException;
import java.security.cert.Certificate;
import java.security.cert.CertificateException;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.time.Clock;
import java.time.Instant;
import java.util.Arrays;
import java.util.Collection;
import java.util.Collections;
import java.util.Date;
import java.util.List;
import java.util.logging.Logger;
import javax.net.ssl.KeyManager;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManager;
import javax.net.ssl.TrustManagerFactory;
import javax.net.ssl.X509KeyManager;
import javax.net.ssl.X509TrustManager;

/**
 * The phone's mTLS identity (seed 000, "a small wrapper implementing MtlsCredentialStore"): a
 * password-protected PKCS#12 bundle from `provision-keys export-p12` becomes an
 * {@link X509KeyManager} (the client key and chain), an {@link X509TrustManager} that trusts only
 * the fleet root CA handed in (never the system store: a public CA must not be able to
 * impersonate the control plane), and a TLS {@link SSLContext} built from both.
 *
 * <p>Loading checks, in this order, and fails with a distinct {@link CredentialException}: the
 * bundle's structure and algorithms (read without the password; {@code LegacyBundleRequired}
 * when the target platform cannot read them), the password ({@code WrongPassword}), exactly one
 * private key entry ({@code Malformed}), the client certificate's validity at the injected clock
 * ({@code Expired}, {@code NotYetValid}). The caller keeps ownership of the password array; this
 * class wipes its own copies. Instances are immutable and thread-safe.
 */
public final class MtlsCredentialStore {
    /** Android 12: the first release whose PKCS#12 reader handles PBES2/AES bundles. */
    public static final int ANDROID_API_PBES2 = 31;
    /** No platform limit: the bundle only has to open on this JVM. */
    public static final int ANY_PLATFORM = Integer.MAX_VALUE;
    /** Bundles are a few KiB; refuse anything absurd before parsing it. */
    public static final int MAX_BUNDLE_BYTES = 1 << 20;

    private static final Logger LOG = Logger.getLogger("io.fleetkey.mobile");
    private static final String URI_PREFIX = "urn:fleetkey:";

    private final X509KeyManager keyManager;
    private final X509TrustManager trustManager;
    private final X509Certificate certificate;
    private final Pkcs12Profile profile;
    private final String alias;

    private MtlsCredentialStore(X509KeyManager km, X509TrustManager tm, X509Certificate cert,
                                Pkcs12Profile profile, String alias) {
        this.keyManager = km;
        this.trustManager = tm;
        this.certificate = cert;
        this.profile = profile;
        this.alias = alias;
    }

    /**
     * Loads bundle (the PKCS#12 bytes; borrowed for the call) opened with password (borrowed, not
     * wiped: it is the caller's) and pins fleetRoot as the only trust anchor. apiLevel is the
     * Android API level the bundle must open on (Build.VERSION.SDK_INT in an app;
     * {@link #ANY_PLATFORM} on a JVM). clock decides the certificate's validity.
     */
    public static MtlsCredentialStore load(byte[] bundle, char[] password,
                                           X509Certificate fleetRoot, int apiLevel, Clock clock)
        throws CredentialException {
        if (bundle == null || password == null || fleetRoot == null || clock == null) {
            throw new IllegalArgumentException(
                "bundle, password, fleetRoot and clock are required");
        }
        if (bundle.length > MAX_BUNDLE_BYTES) {
            throw new CredentialException.Malformed(
                "PKCS#12 bundle is " + bundle.length + " bytes, at most " + MAX_BUNDLE_BYTES, null);
        }
        Pkcs12Profile profile;
        try {
            profile = Pkcs12Profile.read(bundle, 0, bundle.length);
        } catch (Der.DerException e) {
            throw new CredentialException.Malformed("not a PKCS#12 bundle: " + e.getMessage(), e);
        }
        if (apiLevel < ANDROID_API_PBES2 && !profile.legacyCompatible()) {
            throw legacyRequired(profile, "Android API " + apiLevel + " (before 12)");
        }
        char[] pw = password.clone();
        try {
            Pkcs12Mac.Result mac;
            try {
                mac = Pkcs12Mac.verify(profile, pw);
            } catch (GeneralSecurityException e) {
                throw new CredentialException.Malformed("PKCS#12 bundle: " + e.getMessage(), e);
            }
            if (mac == Pkcs12Mac.Result.MISMATCH) {
                /* The MAC covers every byte of the contents: a wrong password, or an altered
                 * bundle (which a new delivery fixes just the same). */
                throw new CredentialException.WrongPassword(
                    "wrong password for the PKCS#12 bundle: its MAC (" + profile.macDigest() +
                        ") does not verify (or the bundle was altered)",
                    null);
            }
            KeyStore ks = KeyStore.getInstance("PKCS12");
            try {
                ks.load(new ByteArrayInputStream(bundle), pw);
            } catch (IOException e) {
                /* The JDK (and Android) report a bad MAC or a failed decryption as an
                 * IOException caused by UnrecoverableKeyException; that is the password. */
                if (e.getCause() instanceof UnrecoverableKeyException) {
                    throw new CredentialException.WrongPassword(
                        "wrong password for the PKCS#12 bundle (" + profile.describe() + ")", null);
                }
                if (e.getCause() instanceof NoSuchAlgorithmException) {
                    throw legacyRequired(profile, "this platform");
                }
                throw new CredentialException.Malformed("PKCS#12 bundle: " + e.getMessage(), e);
            }
            String keyAlias = null;
            for (String a : Collections.list(ks.aliases())) {
                if (ks.isKeyEntry(a)) {
                    if (keyAlias != null) {
                        throw new CredentialException.Malformed(
                            "PKCS#12 bundle holds more than one private key", null);
                    }
                    keyAlias = a;
                }
            }
            if (keyAlias == null) {
                throw new CredentialException.Malformed("PKCS#12 bundle holds no private key",
                                                        null);
            }
            Certificate c = ks.getCertificate(keyAlias);
            if (!(c instanceof X509Certificate)) {
                throw new CredentialException.Malformed(
                    "PKCS#12 bundle: no X.509 certificate for the key", null);
            }
            X509Certificate cert = (X509Certificate)c;
            checkValidity(cert, clock.instant());

            KeyManagerFactory kmf =
                KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            kmf.init(ks, pw);
            X509KeyManager km = firstOf(kmf.getKeyManagers(), X509KeyManager.class);
            X509TrustManager tm = pinnedTrustManager(fleetRoot);
            LOG.info(()
                         -> "mtls: loaded " + cert.getSubjectX500Principal().getName() + " (" +
                                profile.describe() + "), valid until " +
                                cert.getNotAfter().toInstant());
            return new MtlsCredentialStore(km, tm, cert, profile, keyAlias);
        } catch (UnrecoverableKeyException e) {
            /* The store opened but the key did not: its password differs from the store's. */
            throw new CredentialException.WrongPassword("wrong password for the private key", null);
        } catch (CredentialException e) {
            throw e;
        } catch (GeneralSecurityException e) {
            throw new CredentialException("cannot set up mTLS: " + e.getMessage(), e);
        } finally {
            Arrays.fill(pw, '\0');
        }
    }

    /** Reads one X.509 certificate (PEM or DER) from in, e.g. the fleet's root.crt.pem. */
    public static X509Certificate readCertificate(InputStream in) throws CertificateException {
        return (X509Certificate)CertificateFactory.getInstance("X.509").generateCertificate(in);
    }

    private static CredentialException.LegacyBundleRequired legacyRequired(Pkcs12Profile p,
                                                                           String platform) {
        return new CredentialException.LegacyBundleRequired(
            "PKCS#12 bundle uses " + p.describe() + ", which " + platform +
                " cannot read; re-export it with "
                + "`provision-keys export-p12 --legacy` (pbeWithSHA1And3-KeyTripleDES-CBC, "
                + "SHA-1 MAC)",
            p);
    }

    private static void checkValidity(X509Certificate cert, Instant now)
        throws CredentialException {
        Date at = Date.from(now);
        String who = cert.getSubjectX500Principal().getName();
        if (at.after(cert.getNotAfter())) {
            throw new CredentialException.Expired("client certificate " + who + " expired at " +
                                                  cert.getNotAfter().toInstant() + " (now " + now +
                                                  "): provision a new bundle");
        }
        if (at.before(cert.getNotBefore())) {
            throw new CredentialException.NotYetValid(
                "client certificate " + who + " is not valid before " +
                cert.getNotBefore().toInstant() + " (now " + now + "): check the phone's clock");
        }
    }

    /** A PKIX trust manager whose only anchor is root: no system CA can vouch for a server. */
    static X509TrustManager pinnedTrustManager(X509Certificate root)
        throws GeneralSecurityException {
        KeyStore anchors = KeyStore.getInstance(KeyStore.getDefaultType());
        try {
            anchors.load(null, null);
        } catch (IOException e) {
            throw new GeneralSecurityException("empty key store", e);
        }
        anchors.setCertificateEntry("fleet-root", root);
        TrustManagerFactory tmf =
            TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(anchors);
        return firstOf(tmf.getTrustManagers(), X509TrustManager.class);
    }

    private static <T> T firstOf(Object[] managers, Class<T> type) throws NoSuchAlgorithmException {
        for (Object m : managers) {
            if (type.isInstance(m)) {
                return type.cast(m);
            }
        }
        throw new NoSuchAlgorithmException("no " + type.getSimpleName() + " available");
    }

    public X509KeyManager keyManager() {
        return keyManager;
    }

    public X509TrustManager trustManager() {
        return trustManager;
    }

    /** A new TLS context (TLS 1.2/1.3 as the platform negotiates) with both managers. */
    public SSLContext sslContext() throws GeneralSecurityException {
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(new KeyManager[] {keyManager}, new TrustManager[] {trustManager}, null);
        return ctx;
    }

    /** The client certificate (the leaf of the bundle's key entry). */
    public X509Certificate certificate() {
        return certificate;
    }

    public Pkcs12Profile profile() {
        return profile;
    }

    public String alias() {
        return alias;
    }

    /**
     * The fleet identity in the certificate's URI SAN {@code urn:fleetkey:<kind>:<name>}: the
     * OAuth2 client_id is its name. Throws CredentialException when there is none.
     */
    public String clientName() throws CredentialException {
        try {
            Collection<List<?>> sans = certificate.getSubjectAlternativeNames();
            if (sans != null) {
                for (List<?> san : sans) {
                    /* RFC 5280 GeneralName: 6 = uniformResourceIdentifier */
                    if (san.size() == 2 && Integer.valueOf(6).equals(san.get(0)) &&
                        san.get(1) instanceof String &&
                        ((String)san.get(1)).startsWith(URI_PREFIX)) {
                        String rest = ((String)san.get(1)).substring(URI_PREFIX.length());
                        int colon = rest.indexOf(':');
                        if (colon > 0 && colon < rest.length() - 1) {
                            return rest.substring(colon + 1);
                        }
                    }
                }
            }
        } catch (CertificateException e) {
            throw new CredentialException("client certificate: bad subjectAltName", e);
        }
        throw new CredentialException("client certificate has no urn:fleetkey: URI SAN");
    }
}
