package io.fleetkey.mobile;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Instant;
import java.util.Arrays;
import java.util.List;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** FileTokenStore on real files under the build directory. */
class FileTokenStoreTest {
    static final String AT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.access-secret";
    static final String RT = "refresh-secret-0123456789abcdef";
    static final char[] PASS = "store passphrase".toCharArray();
    private Path dir;

    @BeforeEach
    void fresh() throws Exception {
        dir = Fixture.dir().resolve("stores");
        Files.createDirectories(dir);
        dir = Files.createTempDirectory(dir, "t");
    }

    static TokenSet sample() {
        Instant t = Instant.parse("2026-01-01T00:00:00Z");
        return new TokenSet(AT, RT, t, t.plusSeconds(86400), "fleet:read robot:command");
    }

    private FileTokenStore store(Path p) {
        return FileTokenStore.withPassphrase(p, PASS, FileTokenStore.MIN_ITERATIONS);
    }

    private List<String> names() throws Exception {
        try (Stream<Path> s = Files.list(dir)) {
            return s.map(x -> x.getFileName().toString()).sorted().collect(Collectors.toList());
        }
    }

    @Test
    void savesEncryptedAndLoadsBack() throws Exception {
        Path p = dir.resolve("tokens.bin");
        FileTokenStore s = store(p);
        assertTrue(s.load().isEmpty());
        s.save(sample());
        assertEquals("rw-------", PosixFilePermissions.toString(Files.getPosixFilePermissions(p)));
        assertEquals(List.of("tokens.bin"), names(), "no temp file left behind");
        String raw = new String(Files.readAllBytes(p), StandardCharsets.ISO_8859_1);
        assertFalse(raw.contains("access-secret"));
        assertFalse(raw.contains("refresh-secret"));
        assertFalse(raw.contains("fleet:read"));
        /* A new store object (a restarted app) with the same passphrase reads it. */
        TokenSet t = store(p).load().orElseThrow();
        assertEquals(AT, t.accessToken());
        assertEquals(RT, t.refreshToken());
        assertEquals(sample().expiresAt(), t.expiresAt());
        assertEquals(sample().obtainedAt(), t.obtainedAt());
        assertEquals("fleet:read robot:command", t.scope());
        assertFalse(t.toString().contains("secret"));
    }

    @Test
    void rawKeyStore() throws Exception {
        byte[] key = new byte[32];
        Arrays.fill(key, (byte)7);
        Path p = dir.resolve("raw.bin");
        FileTokenStore.withKey(p, key).save(sample());
        assertEquals(AT, FileTokenStore.withKey(p, key).load().orElseThrow().accessToken());
        key[0] = 8;
        assertThrows(TokenStoreException.Tampered.class,
                     () -> FileTokenStore.withKey(p, key).load());
        /* A raw-key file is not opened by a passphrase store, and vice versa. */
        assertThrows(TokenStoreException.Tampered.class, () -> store(p).load());
    }

    @Test
    void everyTamperedByteIsRefusedAndTheFileKept() throws Exception {
        Path p = dir.resolve("tokens.bin");
        store(p).save(sample());
        byte[] good = Files.readAllBytes(p);
        FileTokenStore s = store(p);
        try (Fixture.LogCapture log = new Fixture.LogCapture()) {
            for (int i = 0; i < good.length; i++) {
                byte[] bad = good.clone();
                bad[i] ^= 0x01;
                Files.write(p, bad);
                TokenStoreException e =
                    assertThrows(TokenStoreException.class, s::load, "byte " + i);
                if (i != 4) { /* byte 4 is the version: its own message */
                    assertTrue(e instanceof TokenStoreException.Tampered, "byte " + i);
                }
                assertTrue(e.getMessage().contains("left untouched"), e.getMessage());
                assertArrayEquals(bad, Files.readAllBytes(p), "load changed the file");
                Fixture.assertNoSecretIn(e, AT, RT, new String(PASS));
            }
            log.assertNoSecret(AT, RT, new String(PASS));
        }
        /* Put back, it loads again: nothing was lost by the failed loads. */
        Files.write(p, good);
        assertEquals(AT, s.load().orElseThrow().accessToken());
    }

    @Test
    void truncatedAndOversizedFilesAreRefused() throws Exception {
        Path p = dir.resolve("tokens.bin");
        store(p).save(sample());
        byte[] good = Files.readAllBytes(p);
        for (int n = 0; n < good.length; n++) {
            Files.write(p, Arrays.copyOf(good, n));
            assertThrows(TokenStoreException.Tampered.class, () -> store(p).load(), "cut " + n);
        }
        Files.write(p, new byte[FileTokenStore.MAX_FILE_BYTES + 1]);
        assertThrows(TokenStoreException.Tampered.class, () -> store(p).load());
    }

    @Test
    void hostileIterationCountIsRefusedBeforeDerivation() throws Exception {
        Path p = dir.resolve("tokens.bin");
        store(p).save(sample());
        byte[] b = Files.readAllBytes(p);
        b[6] = 0x7f; /* about 2 billion iterations: must not be attempted */
        Files.write(p, b);
        TokenStoreException e =
            assertThrows(TokenStoreException.Tampered.class, () -> store(p).load());
        assertTrue(e.getMessage().contains("iterations"), e.getMessage());
    }

    @Test
    void wrongPassphraseIsRefusedAndFileKept() throws Exception {
        Path p = dir.resolve("tokens.bin");
        store(p).save(sample());
        byte[] before = Files.readAllBytes(p);
        String other = "not the passphrase";
        TokenStoreException e = assertThrows(
            TokenStoreException.Tampered.class,
            ()
                -> FileTokenStore
                       .withPassphrase(p, other.toCharArray(), FileTokenStore.MIN_ITERATIONS)
                       .load());
        Fixture.assertNoSecretIn(e, other, new String(PASS));
        assertArrayEquals(before, Files.readAllBytes(p));
    }

    @Test
    void overwriteAndClear() throws Exception {
        Path p = dir.resolve("tokens.bin");
        FileTokenStore s = store(p);
        s.save(sample());
        byte[] first = Files.readAllBytes(p);
        Instant t = Instant.parse("2026-02-01T00:00:00Z");
        s.save(new TokenSet("second", null, t, t.plusSeconds(60), ""));
        assertFalse(Arrays.equals(first, Files.readAllBytes(p)), "fresh nonce every write");
        TokenSet back = store(p).load().orElseThrow();
        assertEquals("second", back.accessToken());
        assertEquals(null, back.refreshToken());
        s.clear();
        assertFalse(Files.exists(p));
        s.clear(); /* idempotent */
        assertTrue(s.load().isEmpty());
        assertEquals(List.of(), names());
    }

    @Test
    void unknownVersionIsNamed() throws Exception {
        Path p = dir.resolve("tokens.bin");
        store(p).save(sample());
        byte[] b = Files.readAllBytes(p);
        b[4] = 9;
        Files.write(p, b);
        TokenStoreException e = assertThrows(TokenStoreException.class, () -> store(p).load());
        assertTrue(e.getMessage().contains("version 9"), e.getMessage());
    }
}
