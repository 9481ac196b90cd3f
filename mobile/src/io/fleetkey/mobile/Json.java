package io.fleetkey.mobile;

import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A small strict JSON (RFC 8259) parser and writer: the messages of the token endpoint and of the
 * wss channel, and the token store's plaintext. Strict means: one value and nothing after it but
 * whitespace, no comments, no trailing commas, no leading zeros, no control characters or lone
 * surrogates in strings, no duplicate member names, UTF-8 input only (malformed sequences
 * refused). Bounded: at most {@link #MAX_DEPTH} levels of nesting and the input length given.
 * Values map to: object → unmodifiable Map (insertion order), array → unmodifiable List, string
 * → String, number → Long when integral and in range, otherwise Double, true/false → Boolean,
 * null → {@link #NULL}. Errors are {@link JsonException} with the offset; the message never
 * quotes the input (it may hold a token). Stateless and thread-safe.
 */
public final class Json {
    public static final int MAX_DEPTH = 32;
    /** The value of a JSON null (a Java null would be ambiguous with an absent member). */
    public static final Object NULL = new Object() {
        @Override
        public String toString() {
            return "null";
        }
    };

    public static final class JsonException extends Exception {
        private static final long serialVersionUID = 1L;

        JsonException(int offset, String expected) {
            super("JSON at offset " + offset + ": " + expected);
        }
    }

    private final String s;
    private int pos;

    private Json(String s) {
        this.s = s;
    }

    /** Parses buf[offset, offset + len) as UTF-8 JSON. */
    public static Object parse(byte[] buf, int offset, int len) throws JsonException {
        if (buf == null || offset < 0 || len < 0 || offset > buf.length ||
            len > buf.length - offset) {
            throw new IllegalArgumentException("window outside the buffer");
        }
        CharBuffer chars;
        try {
            chars = StandardCharsets.UTF_8.newDecoder()
                        .onMalformedInput(CodingErrorAction.REPORT)
                        .onUnmappableCharacter(CodingErrorAction.REPORT)
                        .decode(ByteBuffer.wrap(buf, offset, len));
        } catch (CharacterCodingException e) {
            throw new JsonException(0, "invalid UTF-8");
        }
        return parse(chars.toString());
    }

    /** Parses text as one JSON value. */
    public static Object parse(String text) throws JsonException {
        Json p = new Json(text);
        p.ws();
        Object v = p.value(0);
        p.ws();
        if (p.pos != text.length()) {
            throw new JsonException(p.pos, "expected end of input");
        }
        return v;
    }

    /** Parses text and requires an object at the top. */
    @SuppressWarnings("unchecked")
    public static Map<String, Object> parseObject(String text) throws JsonException {
        Object v = parse(text);
        if (!(v instanceof Map)) {
            throw new JsonException(0, "expected an object");
        }
        return (Map<String, Object>)v;
    }

    /** obj[name] when it is a string, else a JsonException naming the member. */
    public static String string(Map<String, Object> obj, String name) throws JsonException {
        Object v = obj.get(name);
        if (!(v instanceof String)) {
            throw new JsonException(0, "member \"" + name + "\": expected a string");
        }
        return (String)v;
    }

    /** obj[name] when it is an integer, else a JsonException naming the member. */
    public static long integer(Map<String, Object> obj, String name) throws JsonException {
        Object v = obj.get(name);
        if (!(v instanceof Long)) {
            throw new JsonException(0, "member \"" + name + "\": expected an integer");
        }
        return (Long)v;
    }

    private void ws() {
        while (pos < s.length()) {
            char c = s.charAt(pos);
            if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
                return;
            }
            pos++;
        }
    }

    private Object value(int depth) throws JsonException {
        if (pos >= s.length()) {
            throw new JsonException(pos, "expected a value");
        }
        char c = s.charAt(pos);
        switch (c) {
        case '{':
            return object(depth + 1);
        case '[':
            return array(depth + 1);
        case '"':
            return string();
        case 't':
            return literal("true", Boolean.TRUE);
        case 'f':
            return literal("false", Boolean.FALSE);
        case 'n':
            return literal("null", NULL);
        default:
            if (c == '-' || (c >= '0' && c <= '9')) {
                return number();
            }
            throw new JsonException(pos, "expected a value");
        }
    }

    private Object literal(String word, Object v) throws JsonException {
        if (!s.startsWith(word, pos)) {
            throw new JsonException(pos, "expected " + word);
        }
        pos += word.length();
        return v;
    }

    private Map<String, Object> object(int depth) throws JsonException {
        if (depth > MAX_DEPTH) {
            throw new JsonException(pos, "nesting deeper than " + MAX_DEPTH);
        }
        pos++;
        Map<String, Object> m = new LinkedHashMap<>();
        ws();
        if (pos < s.length() && s.charAt(pos) == '}') {
            pos++;
            return Collections.unmodifiableMap(m);
        }
        while (true) {
            ws();
            if (pos >= s.length() || s.charAt(pos) != '"') {
                throw new JsonException(pos, "expected a member name");
            }
            int at = pos;
            String k = string();
            ws();
            expect(':');
            ws();
            Object v = value(depth);
            if (m.put(k, v) != null) {
                throw new JsonException(at, "duplicate member name");
            }
            ws();
            if (pos < s.length() && s.charAt(pos) == ',') {
                pos++;
                continue;
            }
            expect('}');
            return Collections.unmodifiableMap(m);
        }
    }

    private List<Object> array(int depth) throws JsonException {
        if (depth > MAX_DEPTH) {
            throw new JsonException(pos, "nesting deeper than " + MAX_DEPTH);
        }
        pos++;
        List<Object> l = new ArrayList<>();
        ws();
        if (pos < s.length() && s.charAt(pos) == ']') {
            pos++;
            return Collections.unmodifiableList(l);
        }
        while (true) {
            ws();
            l.add(value(depth));
            ws();
            if (pos < s.length() && s.charAt(pos) == ',') {
                pos++;
                continue;
            }
            expect(']');
            return Collections.unmodifiableList(l);
        }
    }

    private void expect(char c) throws JsonException {
        if (pos >= s.length() || s.charAt(pos) != c) {
            throw new JsonException(pos, "expected '" + c + "'");
        }
        pos++;
    }

    private String string() throws JsonException {
        pos++; /* the opening quote */
        StringBuilder sb = new StringBuilder();
        while (true) {
            if (pos >= s.length()) {
                throw new JsonException(pos, "unterminated string");
            }
            char c = s.charAt(pos++);
            if (c == '"') {
                return sb.toString();
            }
            if (c < 0x20) {
                throw new JsonException(pos - 1, "control character in string");
            }
            if (Character.isSurrogate(c)) {
                /* Decoded UTF-8 only yields paired surrogates; keep the pair together. */
                if (!Character.isHighSurrogate(c) || pos >= s.length() ||
                    !Character.isLowSurrogate(s.charAt(pos))) {
                    throw new JsonException(pos - 1, "lone surrogate");
                }
                sb.append(c).append(s.charAt(pos++));
                continue;
            }
            if (c != '\\') {
                sb.append(c);
                continue;
            }
            if (pos >= s.length()) {
                throw new JsonException(pos, "unterminated escape");
            }
            char e = s.charAt(pos++);
            switch (e) {
            case '"':
            case '\\':
            case '/':
                sb.append(e);
                break;
            case 'b':
                sb.append('\b');
                break;
            case 'f':
                sb.append('\f');
                break;
            case 'n':
                sb.append('\n');
                break;
            case 'r':
                sb.append('\r');
                break;
            case 't':
                sb.append('\t');
                break;
            case 'u': {
                char u = hex4();
                if (Character.isHighSurrogate(u)) {
                    if (!s.startsWith("\\u", pos)) {
                        throw new JsonException(pos, "high surrogate without its low half");
                    }
                    pos += 2;
                    char lo = hex4();
                    if (!Character.isLowSurrogate(lo)) {
                        throw new JsonException(pos - 4, "expected a low surrogate");
                    }
                    sb.append(u).append(lo);
                } else if (Character.isLowSurrogate(u)) {
                    throw new JsonException(pos - 4, "lone low surrogate");
                } else {
                    sb.append(u);
                }
                break;
            }
            default:
                throw new JsonException(pos - 1, "bad escape");
            }
        }
    }

    private char hex4() throws JsonException {
        if (s.length() - pos < 4) {
            throw new JsonException(pos, "truncated \\u escape");
        }
        int v = 0;
        for (int i = 0; i < 4; i++) {
            int d = Character.digit(s.charAt(pos + i), 16);
            if (d < 0 || s.charAt(pos + i) > 'f') {
                throw new JsonException(pos + i, "expected a hex digit");
            }
            v = (v << 4) | d;
        }
        pos += 4;
        return (char)v;
    }

    private Object number() throws JsonException {
        int start = pos;
        if (s.charAt(pos) == '-') {
            pos++;
        }
        if (pos >= s.length() || !digit(s.charAt(pos))) {
            throw new JsonException(pos, "expected a digit");
        }
        if (s.charAt(pos) == '0') {
            pos++;
            if (pos < s.length() && digit(s.charAt(pos))) {
                throw new JsonException(pos, "leading zero");
            }
        } else {
            digits();
        }
        boolean integral = true;
        if (pos < s.length() && s.charAt(pos) == '.') {
            integral = false;
            pos++;
            if (pos >= s.length() || !digit(s.charAt(pos))) {
                throw new JsonException(pos, "expected a digit after '.'");
            }
            digits();
        }
        if (pos < s.length() && (s.charAt(pos) == 'e' || s.charAt(pos) == 'E')) {
            integral = false;
            pos++;
            if (pos < s.length() && (s.charAt(pos) == '+' || s.charAt(pos) == '-')) {
                pos++;
            }
            if (pos >= s.length() || !digit(s.charAt(pos))) {
                throw new JsonException(pos, "expected an exponent digit");
            }
            digits();
        }
        String t = s.substring(start, pos);
        if (integral && t.length() <= 19) {
            try {
                return Long.parseLong(t);
            } catch (NumberFormatException e) {
                /* Out of long range: falls through to a double. */
            }
        }
        double d = Double.parseDouble(t);
        if (Double.isInfinite(d)) {
            throw new JsonException(start, "number out of range");
        }
        return d;
    }

    private void digits() {
        while (pos < s.length() && digit(s.charAt(pos))) {
            pos++;
        }
    }

    private static boolean digit(char c) {
        return c >= '0' && c <= '9';
    }

    /** Appends v (Map, List, String, Number, Boolean, NULL) as JSON to out. */
    public static StringBuilder write(StringBuilder out, Object v) {
        if (v == null || v == NULL) {
            out.append("null");
        } else if (v instanceof String) {
            quote(out, (String)v);
        } else if (v instanceof Boolean || v instanceof Long || v instanceof Integer) {
            out.append(v);
        } else if (v instanceof Number) {
            double d = ((Number)v).doubleValue();
            if (Double.isNaN(d) || Double.isInfinite(d)) {
                throw new IllegalArgumentException("JSON has no NaN or infinity");
            }
            out.append(d);
        } else if (v instanceof Map) {
            out.append('{');
            boolean first = true;
            for (Map.Entry<?, ?> e : ((Map<?, ?>)v).entrySet()) {
                if (!first) {
                    out.append(',');
                }
                first = false;
                quote(out, String.valueOf(e.getKey()));
                out.append(':');
                write(out, e.getValue());
            }
            out.append('}');
        } else if (v instanceof List) {
            out.append('[');
            boolean first = true;
            for (Object e : (List<?>)v) {
                if (!first) {
                    out.append(',');
                }
                first = false;
                write(out, e);
            }
            out.append(']');
        } else {
            throw new IllegalArgumentException("not a JSON value: " + v.getClass().getName());
        }
        return out;
    }

    /** v as a JSON text. */
    public static String write(Object v) {
        return write(new StringBuilder(), v).toString();
    }

    private static void quote(StringBuilder out, String str) {
        out.append('"');
        for (int i = 0; i < str.length(); i++) {
            char c = str.charAt(i);
            if (c == '"' || c == '\\') {
                out.append('\\').append(c);
            } else if (c < 0x20 || c == 0x2028 || c == 0x2029) {
                out.append(String.format("\\u%04x", (int)c));
            } else {
                out.append(c);
            }
        }
        out.append('"');
    }
}
