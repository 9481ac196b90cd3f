package io.fleetkey.mobile;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;

/**
 * The Java counterpart of tests/fuzz/driver.c: runs a parser of mobile/ over every file of one or
 * more corpus directories, and over each file's truncations and byte mutations (every byte
 * flipped, then seeded random edits), and fails on anything but the parser's own checked
 * exception: a RuntimeException or an Error is a bug (an unchecked length, an overflow).
 *
 * <p>usage: FuzzDriver (p12 | json) DIR...
 */
public final class FuzzDriver {
    private FuzzDriver() {
    }

    private interface Target {
        void run(byte[] b) throws Exception;
    }

    public static void main(String[] args) throws IOException {
        if (args.length < 2) {
            System.err.println("usage: FuzzDriver (p12 | json) DIR...");
            System.exit(2);
        }
        Target t;
        if (args[0].equals("p12")) {
            t = b -> Pkcs12Profile.read(b, 0, b.length);
        } else if (args[0].equals("json")) {
            t = b -> Json.parse(b, 0, b.length);
        } else {
            System.err.println("FuzzDriver: unknown target " + args[0] + ", expected p12 or json");
            System.exit(2);
            return;
        }
        List<Path> files = new ArrayList<>();
        for (int i = 1; i < args.length; i++) {
            try (Stream<Path> s = Files.list(Paths.get(args[i]))) {
                s.filter(Files::isRegularFile).sorted().forEach(files::add);
            }
        }
        if (files.isEmpty()) {
            System.err.println("FuzzDriver: empty corpus");
            System.exit(1);
        }
        Random rnd = new Random(16); /* fixed seed: a failure is reproducible */
        long runs = 0;
        for (Path f : files) {
            byte[] b = Files.readAllBytes(f);
            runs += one(t, f, b);
            for (int n = 0; n < b.length; n++) {
                runs += one(t, f, java.util.Arrays.copyOf(b, n));
            }
            for (int i = 0; i < b.length; i++) {
                byte[] x = b.clone();
                x[i] ^= (byte)0xff;
                runs += one(t, f, x);
            }
            for (int k = 0; k < 2000 && b.length > 0; k++) {
                byte[] x = b.clone();
                int edits = 1 + rnd.nextInt(4);
                for (int e = 0; e < edits; e++) {
                    x[rnd.nextInt(x.length)] = (byte)rnd.nextInt(256);
                }
                runs += one(t, f, x);
            }
        }
        System.out.println("FuzzDriver " + args[0] + ": " + files.size() + " files, " + runs +
                           " runs, no crash");
    }

    private static int one(Target t, Path f, byte[] b) {
        try {
            t.run(b);
        } catch (Der.DerException | Json.JsonException expected) {
            /* A clean refusal. */
        } catch (Throwable e) {
            System.err.println("FuzzDriver: " + f + " (" + b.length + " bytes): " + e);
            e.printStackTrace();
            System.exit(1);
        }
        return 1;
    }
}
