package io.fleetkey.mobile;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * The protection algorithms used inside a PKCS#12 bundle (RFC 7292), read without the password:
 * the MAC digest and, for every encrypted part (encryptedData content infos and shrouded key
 * bags), its PBE scheme. It exists so that a bundle an old Android cannot open is recognised
 * before it fails there with a misleading "wrong password": Android before 12 (API 31) reads only
 * the PKCS#12 PBE schemes (pbeWithSHAAnd3-KeyTripleDES-CBC, RC2) with a SHA-1 MAC, not PBES2.
 * Immutable and thread-safe.
 */
public final class Pkcs12Profile {
    static final String OID_DATA = "1.2.840.113549.1.7.1";
    static final String OID_ENCRYPTED_DATA = "1.2.840.113549.1.7.6";
    static final String OID_SHROUDED_KEY_BAG = "1.2.840.113549.1.12.10.1.2";
    static final String OID_PBES2 = "1.2.840.113549.1.5.13";
    static final String OID_PBKDF2 = "1.2.840.113549.1.5.12";
    /** The PKCS#12 PBE family (pbeWithSHAAnd128BitRC4 ... pbeWithSHAAnd40BitRC2-CBC). */
    static final String PKCS12_PBE_PREFIX = "1.2.840.113549.1.12.1.";
    static final String OID_SHA1 = "1.3.14.3.2.26";

    /** At most this many bags or content infos are inspected: a bundle holds a handful. */
    private static final int MAX_ITEMS = 256;

    private final List<String> encryptions;
    private final String macDigest;
    /* The MAC's inputs, as windows into the caller's array (see Pkcs12Mac): */
    final byte[] buf;
    final int authSafeOffset, authSafeLength; /* the authSafe OCTET STRING content (MAC input) */
    final String macDigestOid;
    final int macOffset, macLength, saltOffset, saltLength;
    final long macIterations;

    private Pkcs12Profile(List<String> encryptions, String macDigest, byte[] buf,
                          Der.Element authSafe, String macDigestOid, Der.Element mac,
                          Der.Element salt, long iterations) {
        this.encryptions = Collections.unmodifiableList(encryptions);
        this.macDigest = macDigest;
        this.buf = buf;
        this.authSafeOffset = authSafe.contentOffset;
        this.authSafeLength = authSafe.contentLength;
        this.macDigestOid = macDigestOid;
        this.macOffset = mac == null ? 0 : mac.contentOffset;
        this.macLength = mac == null ? 0 : mac.contentLength;
        this.saltOffset = salt == null ? 0 : salt.contentOffset;
        this.saltLength = salt == null ? 0 : salt.contentLength;
        this.macIterations = iterations;
    }

    /** Human-readable names of the encryption schemes, one per encrypted part, in file order. */
    public List<String> encryptions() {
        return encryptions;
    }

    /** The MAC digest name ("sha1", "sha256", ...), or null when the bundle has no MAC. */
    public String macDigest() {
        return macDigest;
    }

    /**
     * True when every encrypted part uses a PKCS#12 PBE scheme and the MAC (if any) is SHA-1:
     * what `provision-keys export-p12 --legacy` writes and what Android before 12 can read.
     */
    public boolean legacyCompatible() {
        for (String e : encryptions) {
            if (!e.startsWith("pbeWithSHA1And")) {
                return false;
            }
        }
        return macDigest == null || macDigest.equals("sha1");
    }

    /** One line for messages: "PBES2/PBKDF2-hmacWithSHA256/AES-256-CBC, MAC sha256". */
    public String describe() {
        List<String> distinct = new ArrayList<>();
        for (String e : encryptions) {
            if (!distinct.contains(e)) {
                distinct.add(e);
            }
        }
        return String.join(" + ", distinct) + ", MAC " + (macDigest == null ? "none" : macDigest);
    }

    /**
     * Reads the profile of buf[offset, offset + len). Borrows buf for the call only. Throws
     * {@link Der.DerException} (with the byte offset) for anything that is not a well-formed
     * PKCS#12 PFX in DER; never throws a RuntimeException on bad input. The profile keeps
     * windows into buf for {@link Pkcs12Mac}: buf must not change while the profile is used.
     */
    static Pkcs12Profile read(byte[] buf, int offset, int len) throws Der.DerException {
        Der top = new Der(buf, offset, len);
        Der pfx = top.next(Der.SEQUENCE).contents();
        top.expectEnd();
        if (pfx.next(Der.INTEGER).smallInteger() != 3) {
            throw new Der.DerException("PFX version is not 3");
        }
        List<String> encs = new ArrayList<>();
        /* authSafe ContentInfo: data, whose OCTET STRING holds the AuthenticatedSafe. */
        Der authSafe = pfx.next(Der.SEQUENCE).contents();
        String type = authSafe.next(Der.OID).oid();
        if (!type.equals(OID_DATA)) {
            throw new Der.DerException("authSafe content type " + type + ", expected data (" +
                                       OID_DATA + "); public-key integrity mode is not supported");
        }
        Der explicit = authSafe.next(Der.CONTEXT_0_CONSTRUCTED).contents();
        Der.Element authSafeOctets = explicit.next(Der.OCTET_STRING);
        Der safes = authSafeOctets.contents().next(Der.SEQUENCE).contents();
        int items = 0;
        while (safes.hasMore()) {
            if (++items > MAX_ITEMS) {
                throw new Der.DerException("more than " + MAX_ITEMS + " content infos");
            }
            Der ci = safes.next(Der.SEQUENCE).contents();
            String ctype = ci.next(Der.OID).oid();
            Der content = ci.next(Der.CONTEXT_0_CONSTRUCTED).contents();
            if (ctype.equals(OID_ENCRYPTED_DATA)) {
                /* EncryptedData ::= SEQUENCE { version, EncryptedContentInfo } */
                Der ed = content.next(Der.SEQUENCE).contents();
                ed.next(Der.INTEGER);
                Der eci = ed.next(Der.SEQUENCE).contents();
                eci.next(Der.OID);
                encs.add(algorithm(eci.next(Der.SEQUENCE)));
            } else if (ctype.equals(OID_DATA)) {
                Der bags = content.next(Der.OCTET_STRING).contents().next(Der.SEQUENCE).contents();
                while (bags.hasMore()) {
                    if (++items > MAX_ITEMS) {
                        throw new Der.DerException("more than " + MAX_ITEMS + " safe bags");
                    }
                    Der bag = bags.next(Der.SEQUENCE).contents();
                    String bagType = bag.next(Der.OID).oid();
                    if (bagType.equals(OID_SHROUDED_KEY_BAG)) {
                        Der epki = bag.next(Der.CONTEXT_0_CONSTRUCTED)
                                       .contents()
                                       .next(Der.SEQUENCE)
                                       .contents();
                        encs.add(algorithm(epki.next(Der.SEQUENCE)));
                    }
                }
            } else {
                throw new Der.DerException("content type " + ctype + " is not data/encryptedData");
            }
        }
        String mac = null;
        String macOid = null;
        Der.Element macValue = null;
        Der.Element salt = null;
        long iterations = 1;
        if (pfx.hasMore()) {
            /* MacData ::= SEQUENCE { mac DigestInfo, macSalt OCTET STRING,
             *                        iterations INTEGER DEFAULT 1 }   (RFC 7292 4) */
            Der macData = pfx.next(Der.SEQUENCE).contents();
            Der digestInfo = macData.next(Der.SEQUENCE).contents();
            Der alg = digestInfo.next(Der.SEQUENCE).contents();
            macOid = alg.next(Der.OID).oid();
            mac = digestName(macOid);
            macValue = digestInfo.next(Der.OCTET_STRING);
            digestInfo.expectEnd();
            salt = macData.next(Der.OCTET_STRING);
            if (macData.hasMore()) {
                iterations = macData.next(Der.INTEGER).smallInteger();
            }
            macData.expectEnd();
        }
        pfx.expectEnd();
        return new Pkcs12Profile(encs, mac, buf, authSafeOctets, macOid, macValue, salt,
                                 iterations);
    }

    /** Names an AlgorithmIdentifier of an encrypted part, looking inside PBES2. */
    private static String algorithm(Der.Element algId) throws Der.DerException {
        Der a = algId.contents();
        String oid = a.next(Der.OID).oid();
        if (oid.startsWith(PKCS12_PBE_PREFIX)) {
            switch (oid.substring(PKCS12_PBE_PREFIX.length())) {
            case "1":
                return "pbeWithSHA1And128BitRC4";
            case "2":
                return "pbeWithSHA1And40BitRC4";
            case "3":
                return "pbeWithSHA1And3-KeyTripleDES-CBC";
            case "4":
                return "pbeWithSHA1And2-KeyTripleDES-CBC";
            case "5":
                return "pbeWithSHA1And128BitRC2-CBC";
            case "6":
                return "pbeWithSHA1And40BitRC2-CBC";
            default:
                return oid;
            }
        }
        if (!oid.equals(OID_PBES2)) {
            return oid;
        }
        /* PBES2-params ::= SEQUENCE { keyDerivationFunc, encryptionScheme } (RFC 8018 A.4) */
        Der params = a.next(Der.SEQUENCE).contents();
        Der kdf = params.next(Der.SEQUENCE).contents();
        String kdfOid = kdf.next(Der.OID).oid();
        String kdfName = kdfOid;
        if (kdfOid.equals(OID_PBKDF2)) {
            /* PBKDF2-params: salt, iterationCount, keyLength OPTIONAL, prf DEFAULT hmacWithSHA1 */
            Der p = kdf.next(Der.SEQUENCE).contents();
            p.next();
            p.next(Der.INTEGER);
            String prf = "hmacWithSHA1";
            while (p.hasMore()) {
                Der.Element e = p.next();
                if (e.tag == Der.SEQUENCE) {
                    prf = prfName(e.contents().next(Der.OID).oid());
                }
            }
            kdfName = "PBKDF2-" + prf;
        }
        Der enc = params.next(Der.SEQUENCE).contents();
        return "PBES2/" + kdfName + "/" + cipherName(enc.next(Der.OID).oid());
    }

    private static String prfName(String oid) {
        switch (oid) {
        case "1.2.840.113549.2.7":
            return "hmacWithSHA1";
        case "1.2.840.113549.2.9":
            return "hmacWithSHA256";
        case "1.2.840.113549.2.10":
            return "hmacWithSHA384";
        case "1.2.840.113549.2.11":
            return "hmacWithSHA512";
        default:
            return oid;
        }
    }

    private static String cipherName(String oid) {
        switch (oid) {
        case "2.16.840.1.101.3.4.1.2":
            return "AES-128-CBC";
        case "2.16.840.1.101.3.4.1.22":
            return "AES-192-CBC";
        case "2.16.840.1.101.3.4.1.42":
            return "AES-256-CBC";
        case "1.2.840.113549.3.7":
            return "DES-EDE3-CBC";
        default:
            return oid;
        }
    }

    private static String digestName(String oid) {
        switch (oid) {
        case OID_SHA1:
            return "sha1";
        case "2.16.840.1.101.3.4.2.1":
            return "sha256";
        case "2.16.840.1.101.3.4.2.2":
            return "sha384";
        case "2.16.840.1.101.3.4.2.3":
            return "sha512";
        default:
            return oid;
        }
    }
}
