// An independent check of fleetkey-server's access tokens with the JDK's own ECDSA
// (java.security, SHA256withECDSAinP1363Format: the JOSE r||s form, no conversion of ours):
// the public key is built from the JWKS x/y, the JWT's signature verified over
// header.payload. Run as a single-file program: java Es256Verify.java JWKS_FILE JWT_FILE.
// Prints "ok kid=..." and exits 0, or exits 1.
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.AlgorithmParameters;
import java.security.KeyFactory;
import java.security.PublicKey;
import java.security.Signature;
import java.security.spec.ECGenParameterSpec;
import java.security.spec.ECParameterSpec;
import java.security.spec.ECPoint;
import java.security.spec.ECPublicKeySpec;
import java.util.Base64;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

public class Es256Verify {
    static String field(String json, String name) {
        Matcher m = Pattern.compile("\"" + name + "\"\\s*:\\s*\"([^\"]*)\"").matcher(json);
        if (!m.find()) {
            throw new IllegalArgumentException("no " + name);
        }
        return m.group(1);
    }

    public static void main(String[] args) throws Exception {
        String jwks = Files.readString(Path.of(args[0]));
        String jwt = Files.readString(Path.of(args[1])).trim();
        Base64.Decoder d = Base64.getUrlDecoder();
        BigInteger x = new BigInteger(1, d.decode(field(jwks, "x")));
        BigInteger y = new BigInteger(1, d.decode(field(jwks, "y")));
        AlgorithmParameters p = AlgorithmParameters.getInstance("EC");
        p.init(new ECGenParameterSpec("secp256r1"));
        ECParameterSpec spec = p.getParameterSpec(ECParameterSpec.class);
        PublicKey pub = KeyFactory.getInstance("EC").generatePublic(
            new ECPublicKeySpec(new ECPoint(x, y), spec));
        String[] parts = jwt.split("\\.");
        String header = new String(d.decode(parts[0]), StandardCharsets.UTF_8);
        if (!field(header, "alg").equals("ES256") || !field(header, "kid").equals(field(jwks, "kid"))) {
            System.err.println("header " + header + " does not match the JWKS");
            System.exit(1);
        }
        Signature s = Signature.getInstance("SHA256withECDSAinP1363Format");
        s.initVerify(pub);
        s.update((parts[0] + "." + parts[1]).getBytes(StandardCharsets.US_ASCII));
        if (!s.verify(d.decode(parts[2]))) {
            System.err.println("signature does not verify");
            System.exit(1);
        }
        System.out.println("ok kid=" + field(jwks, "kid"));
    }
}
