package io.fleetkey.mobile;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class JsonTest {
    @Test
    void parsesTheTokenResponse() throws Exception {
        Map<String, Object> m =
            Json.parseObject("{\"access_token\":\"eyJ.a.b\",\"token_type\":"
                             + "\"Bearer\",\"expires_in\":86400,\"refresh_token\":\"rt\",\"scope\":"
                             + "\"fleet:read robot:command\"}");
        assertEquals("eyJ.a.b", Json.string(m, "access_token"));
        assertEquals(86400L, Json.integer(m, "expires_in"));
        assertThrows(Json.JsonException.class, () -> Json.integer(m, "scope"));
        assertThrows(Json.JsonException.class, () -> Json.string(m, "expires_in"));
        assertThrows(Json.JsonException.class, () -> Json.string(m, "absent"));
    }

    @Test
    void parsesEveryKindOfValue() throws Exception {
        Object v = Json.parse(
            " [1, -0, 2.5, -1e3, 1E+2, true, false, null, \"\", {}, [],"
            + " \"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\", 9223372036854775807,"
            + " 9223372036854775808 ] ");
        List<?> l = (List<?>)v;
        assertEquals(1L, l.get(0));
        assertEquals(0L, l.get(1));
        assertEquals(2.5, l.get(2));
        assertEquals(-1000.0, l.get(3));
        assertEquals(100.0, l.get(4));
        assertEquals(Boolean.TRUE, l.get(5));
        assertEquals(Boolean.FALSE, l.get(6));
        assertSame(Json.NULL, l.get(7));
        assertEquals("", l.get(8));
        assertEquals(Map.of(), l.get(9));
        assertEquals(List.of(), l.get(10));
        assertEquals("\"\\/\b\f\n\r\té\ud83d\ude00", l.get(11));
        assertEquals(Long.MAX_VALUE, l.get(12));
        assertTrue(l.get(13) instanceof Double);
    }

    @Test
    void roundTrips() throws Exception {
        Map<String, Object> m = Map.of("type", "hello", "s", "a\"b\\c\n\u0001\u2028", "n", 5L, "l",
                                       List.of(true, Json.NULL));
        assertEquals(m, Json.parse(Json.write(m)));
    }

    @Test
    void refusesWhatRfc8259Refuses() {
        String[] bad = {"",
                        " ",
                        "{",
                        "}",
                        "[",
                        "[1,]",
                        "[,1]",
                        "{\"a\":1,}",
                        "{\"a\" 1}",
                        "{a:1}",
                        "{'a':1}",
                        "[01]",
                        "[-]",
                        "[1.]",
                        "[.5]",
                        "[1e]",
                        "[1e+]",
                        "[+1]",
                        "[NaN]",
                        "[Infinity]",
                        "[1e999]",
                        "tru",
                        "nul",
                        "[true false]",
                        "1 2",
                        "{} x",
                        "\"abc",
                        "\"\\x\"",
                        "\"\\u12\"",
                        "\"\\u12g4\"",
                        "\"\\ud800\"",
                        "\"\\udc00\"",
                        "\"\\ud800\\u0041\"",
                        "\"a\u0001b\"",
                        "\"tab\there\"",
                        "/* c */ 1",
                        "[1] // c",
                        "{\"a\":1,\"a\":2}",
                        "\ufeff{}"};
        for (String s : bad) {
            assertThrows(Json.JsonException.class, () -> Json.parse(s), s);
        }
        assertThrows(Json.JsonException.class, () -> Json.parseObject("[1]"));
    }

    @Test
    void boundsNesting() throws Exception {
        String ok = "[".repeat(Json.MAX_DEPTH) + "]".repeat(Json.MAX_DEPTH);
        Json.parse(ok);
        String deep = "[".repeat(Json.MAX_DEPTH + 1) + "]".repeat(Json.MAX_DEPTH + 1);
        assertThrows(Json.JsonException.class, () -> Json.parse(deep));
        String bomb = "{\"a\":".repeat(100000);
        assertThrows(Json.JsonException.class, () -> Json.parse(bomb));
    }

    @Test
    void bytesAreStrictUtf8InsideTheWindow() throws Exception {
        byte[] b = "xx{\"k\":\"\u00e9\"}yy".getBytes(StandardCharsets.UTF_8);
        assertEquals(Map.of("k", "\u00e9"), Json.parse(b, 2, b.length - 4));
        assertThrows(Json.JsonException.class, () -> Json.parse(b, 0, b.length));
        /* Overlong encoding of '"', a lone continuation byte, a cut sequence. */
        byte[][] bad = {{'"', (byte)0xc0, (byte)0xa2, '"'},
                        {'"', (byte)0x80, '"'},
                        {'"', (byte)0xc3},
                        {'"', (byte)0xed, (byte)0xa0, (byte)0x80, '"'}};
        for (byte[] x : bad) {
            assertThrows(Json.JsonException.class, () -> Json.parse(x, 0, x.length));
        }
        assertThrows(IllegalArgumentException.class, () -> Json.parse(b, 5, b.length));
    }

    @Test
    void errorsNeverQuoteTheInput() {
        String secret = "eyJhbGciOiJFUzI1NiJ9.c2VjcmV0.sig";
        Json.JsonException e = assertThrows(
            Json.JsonException.class, () -> Json.parse("{\"access_token\":\"" + secret + "\",}"));
        assertFalse(e.getMessage().contains(secret));
        assertFalse(e.getMessage().contains("c2VjcmV0"));
    }
}
