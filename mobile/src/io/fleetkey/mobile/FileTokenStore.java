package io.fleetkey.mobile;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.AccessDeniedException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.GeneralSecurityException;
import java.security.SecureRandom;
import java.util.Arrays;
import java.util.EnumSet;
import java.util.Optional;
import java.util.Set;
import java.util.logging.Logger;
import javax.crypto.AEADBadTagException;
import javax.crypto.Cipher;
import javax.crypto.SecretKeyFactory;
import javax.crypto.spec.GCMParameterSpec;
import javax.crypto.spec.PBEKeySpec;
import javax.crypto.spec.SecretKeySpec;

/**
 * {@link EncryptedTokenStore} in one file, standing in for Android's EncryptedSharedPreferences
 * on a JVM. File layout (version 1), all of the 38-byte header authenticated as GCM AAD so no
 * field can be changed unnoticed:
 *
 * <pre>
 *   0  4  magic "FKTS"
 *   4  1  version (1)
 *   5  1  key source: 0 raw 256-bit key, 1 PBKDF2-HMAC-SHA256 from a passphrase
 *   6  4  PBKDF2 iterations, big endian (0 for a raw key)
 *  10 16  PBKDF2 salt (random per store; zero for a raw key)
 *  26 12  AES-GCM nonce (random per write)
 *  38  n  AES-256-GCM ciphertext of the TokenSet JSON, then the 16-byte tag
 * </pre>
 *
 * Writes go to a temp file in the same directory (mode 0600 set explicitly, whatever the umask),
 * are forced to disk, then renamed over the file with ATOMIC_MOVE and the directory is forced:
 * a crash leaves the old or the new file. A file that does not authenticate raises
 * {@link TokenStoreException.Tampered} and is left as it is. Thread-safe (one monitor).
 */
public final class FileTokenStore implements EncryptedTokenStore {
    public static final int DEFAULT_ITERATIONS = 310_000;
    /** Iteration counts read from a file are bounded: a hostile header must not stall us. */
    public static final int MIN_ITERATIONS = 10_000;
    public static final int MAX_ITERATIONS = 5_000_000;
    static final int MAX_FILE_BYTES = 64 * 1024;
    static final int HEADER_LEN = 38;
    private static final byte[] MAGIC = {'F', 'K', 'T', 'S'};
    private static final int VERSION = 1;
    private static final int SRC_RAW = 0;
    private static final int SRC_PBKDF2 = 1;
    private static final int TAG_BITS = 128;
    private static final Set<PosixFilePermission> MODE_0600 =
        PosixFilePermissions.fromString("rw-------");
    private static final Logger LOG = Logger.getLogger("io.fleetkey.mobile");

    private final Path path;
    private final SecureRandom random = new SecureRandom();
    private final char[] passphrase; /* null for a raw key */
    private final int iterations;
    /* The key for cachedSalt: PBKDF2 is slow on purpose, so derive once per salt. */
    private byte[] cachedSalt;
    private byte[] key;

    private FileTokenStore(Path path, char[] passphrase, int iterations, byte[] rawKey) {
        this.path = path.toAbsolutePath();
        this.passphrase = passphrase;
        this.iterations = iterations;
        this.key = rawKey;
        this.cachedSalt = rawKey == null ? null : new byte[16];
    }

    /**
     * A store at path keyed by PBKDF2-HMAC-SHA256(passphrase, random salt, iterations). The
     * passphrase is copied (the caller may wipe its array). iterations in [MIN, MAX]_ITERATIONS.
     */
    public static FileTokenStore withPassphrase(Path path, char[] passphrase, int iterations) {
        if (passphrase == null || passphrase.length == 0) {
            throw new IllegalArgumentException("empty passphrase");
        }
        if (iterations < MIN_ITERATIONS || iterations > MAX_ITERATIONS) {
            throw new IllegalArgumentException("iterations outside [" + MIN_ITERATIONS + ", " +
                                               MAX_ITERATIONS + "]");
        }
        return new FileTokenStore(path, passphrase.clone(), iterations, null);
    }

    /** A store at path keyed by a raw 32-byte AES key (copied). */
    public static FileTokenStore withKey(Path path, byte[] key) {
        if (key == null || key.length != 32) {
            throw new IllegalArgumentException("the key must be 32 bytes");
        }
        return new FileTokenStore(path, null, 0, key.clone());
    }

    public Path path() {
        return path;
    }

    @Override
    public synchronized Optional<TokenSet> load() throws TokenStoreException {
        byte[] file;
        try {
            if (Files.size(path) > MAX_FILE_BYTES) {
                throw new TokenStoreException.Tampered(path + ": larger than " + MAX_FILE_BYTES +
                                                       " bytes, not a token store; left untouched");
            }
            file = Files.readAllBytes(path);
        } catch (NoSuchFileException e) {
            return Optional.empty();
        } catch (IOException e) {
            throw new TokenStoreException(path + ": cannot read: " + e.getClass().getSimpleName(),
                                          e);
        }
        byte[] plain = null;
        try {
            plain = decrypt(file);
            return Optional.of(TokenSet.fromJson(new String(plain, StandardCharsets.UTF_8)));
        } catch (Json.JsonException e) {
            /* Authenticated but unparsable: written by a bug, not an attacker. */
            throw new TokenStoreException(path + ": authenticated content is not a token set (" +
                                              e.getMessage() + "); left untouched",
                                          null);
        } finally {
            if (plain != null) {
                Arrays.fill(plain, (byte)0);
            }
        }
    }

    private byte[] decrypt(byte[] file) throws TokenStoreException {
        if (file.length < HEADER_LEN + TAG_BITS / 8) {
            throw tampered("truncated (" + file.length + " bytes, at least " +
                           (HEADER_LEN + TAG_BITS / 8) + ")");
        }
        if (!Arrays.equals(Arrays.copyOf(file, 4), MAGIC)) {
            throw tampered("bad magic, expected FKTS");
        }
        int version = file[4] & 0xff;
        if (version != VERSION) {
            throw new TokenStoreException(path + ": version " + version + ", this code reads " +
                                              VERSION + "; left untouched",
                                          null);
        }
        int src = file[5] & 0xff;
        long iter = ByteBuffer.wrap(file, 6, 4).getInt() & 0xffffffffL;
        if (src != (passphrase == null ? SRC_RAW : SRC_PBKDF2)) {
            throw tampered("key source " + src + " does not match this store's key");
        }
        if (src == SRC_PBKDF2 && (iter < MIN_ITERATIONS || iter > MAX_ITERATIONS)) {
            throw tampered("PBKDF2 iterations " + iter + " outside [" + MIN_ITERATIONS + ", " +
                           MAX_ITERATIONS + "]");
        }
        byte[] salt = Arrays.copyOfRange(file, 10, 26);
        try {
            byte[] k = keyFor(salt, (int)iter);
            Cipher c = Cipher.getInstance("AES/GCM/NoPadding");
            c.init(Cipher.DECRYPT_MODE, new SecretKeySpec(k, "AES"),
                   new GCMParameterSpec(TAG_BITS, file, 26, 12));
            c.updateAAD(file, 0, HEADER_LEN);
            return c.doFinal(file, HEADER_LEN, file.length - HEADER_LEN);
        } catch (AEADBadTagException e) {
            throw tampered("authentication failed (modified, or the wrong passphrase/key)");
        } catch (GeneralSecurityException e) {
            throw new TokenStoreException(path + ": " + e.getClass().getSimpleName(), e);
        }
    }

    private TokenStoreException.Tampered tampered(String why) {
        LOG.warning(() -> "token store " + path + ": " + why);
        return new TokenStoreException.Tampered("token store " + path + ": " + why +
                                                "; the file was left untouched");
    }

    /* The key for salt: the cached one, or PBKDF2 anew (and cached) for a passphrase store. */
    private byte[] keyFor(byte[] salt, int iter) throws GeneralSecurityException {
        if (passphrase == null || (cachedSalt != null && Arrays.equals(salt, cachedSalt))) {
            return key;
        }
        PBEKeySpec spec = new PBEKeySpec(passphrase, salt, iter, 256);
        try {
            byte[] k = SecretKeyFactory.getInstance("PBKDF2WithHmacSHA256")
                           .generateSecret(spec)
                           .getEncoded();
            if (key != null) {
                Arrays.fill(key, (byte)0);
            }
            key = k;
            cachedSalt = salt;
            return k;
        } finally {
            spec.clearPassword();
        }
    }

    @Override
    public synchronized void save(TokenSet tokens) throws TokenStoreException {
        byte[] plain = tokens.toJson().getBytes(StandardCharsets.UTF_8);
        byte[] file;
        try {
            byte[] salt = cachedSalt;
            if (passphrase != null && salt == null) {
                salt = new byte[16];
                random.nextBytes(salt);
            }
            byte[] k = keyFor(salt, iterations);
            ByteBuffer hdr = ByteBuffer.allocate(HEADER_LEN);
            hdr.put(MAGIC)
                .put((byte)VERSION)
                .put((byte)(passphrase == null ? SRC_RAW : SRC_PBKDF2))
                .putInt(passphrase == null ? 0 : iterations)
                .put(salt);
            byte[] nonce = new byte[12];
            random.nextBytes(nonce);
            hdr.put(nonce);
            Cipher c = Cipher.getInstance("AES/GCM/NoPadding");
            c.init(Cipher.ENCRYPT_MODE, new SecretKeySpec(k, "AES"),
                   new GCMParameterSpec(TAG_BITS, nonce));
            c.updateAAD(hdr.array());
            byte[] ct = c.doFinal(plain);
            file = new byte[HEADER_LEN + ct.length];
            System.arraycopy(hdr.array(), 0, file, 0, HEADER_LEN);
            System.arraycopy(ct, 0, file, HEADER_LEN, ct.length);
        } catch (GeneralSecurityException e) {
            throw new TokenStoreException(path + ": encrypt: " + e.getClass().getSimpleName(), e);
        } finally {
            Arrays.fill(plain, (byte)0);
        }
        writeAtomic(file);
        LOG.fine(() -> "token store " + path + ": saved " + tokens);
    }

    /* Temp file + force + ATOMIC_MOVE + directory force: the file is the old or the new one. */
    private void writeAtomic(byte[] data) throws TokenStoreException {
        Path dir = path.getParent();
        byte[] name = new byte[8];
        random.nextBytes(name);
        Path tmp = dir.resolve("." + path.getFileName() + ".tmp-" + hex(name));
        try {
            try (FileChannel ch = FileChannel.open(
                     tmp, EnumSet.of(StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE),
                     PosixFilePermissions.asFileAttribute(MODE_0600))) {
                /* The umask can only remove bits; set 0600 explicitly all the same. */
                Files.setPosixFilePermissions(tmp, MODE_0600);
                ByteBuffer b = ByteBuffer.wrap(data);
                while (b.hasRemaining()) {
                    ch.write(b);
                }
                ch.force(true);
            }
            Files.move(tmp, path, StandardCopyOption.ATOMIC_MOVE);
            forceDir(dir);
        } catch (IOException e) {
            try {
                Files.deleteIfExists(tmp);
            } catch (IOException ignored) {
                /* The original error is the one worth reporting. */
            }
            throw new TokenStoreException(
                path + ": cannot write: " + e.getClass().getSimpleName() +
                    (e instanceof AccessDeniedException ? " (permission denied)" : ""),
                e);
        } finally {
            Arrays.fill(data, (byte)0);
        }
    }

    private static void forceDir(Path dir) throws IOException {
        /* The rename is durable only once the directory entry is on disk. */
        try (FileChannel d = FileChannel.open(dir, StandardOpenOption.READ)) {
            d.force(true);
        }
    }

    @Override
    public synchronized void clear() throws TokenStoreException {
        try {
            if (Files.deleteIfExists(path)) {
                forceDir(path.getParent());
                LOG.info(() -> "token store " + path + ": cleared");
            }
        } catch (IOException e) {
            throw new TokenStoreException(path + ": cannot delete: " + e.getClass().getSimpleName(),
                                          e);
        }
    }

    private static String hex(byte[] b) {
        StringBuilder sb = new StringBuilder();
        for (byte x : b) {
            sb.append(String.format("%02x", x & 0xff));
        }
        return sb.toString();
    }
}
