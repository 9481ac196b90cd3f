package io.fleetkey.mobile;

import java.io.IOException;
import java.net.http.WebSocket;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.logging.Logger;

/**
 * One open wss channel to fleetkey-server (docs/wss-protocol.md, phones' messages in issue 16):
 * hello → welcome, list_devices → devices, ping → pong. Requests are synchronous and bounded by
 * the client's timeout; messages that answer nothing asked are skipped. Text frames are
 * reassembled up to {@link #MAX_MESSAGE} characters and parsed with the strict {@link Json}.
 * One caller at a time per session (the requests are not interleaved).
 */
public final class FleetSession implements AutoCloseable {
    public static final int MAX_MESSAGE = 256 * 1024;
    private static final Logger LOG = Logger.getLogger("io.fleetkey.mobile");
    /** Queue marker: the server closed the channel (code in closeCode). */
    private static final Object CLOSED = new Object();

    /** The server refused the WebSocket upgrade with this HTTP status. */
    public static final class Refused extends IOException {
        private static final long serialVersionUID = 1L;
        private final int status;

        Refused(int status) {
            super("wss upgrade refused: HTTP " + status);
            this.status = status;
        }

        public int status() {
            return status;
        }
    }

    private final Duration timeout;
    private final BlockingQueue<Object> inbox = new LinkedBlockingQueue<>();
    private final AtomicLong nextId = new AtomicLong(1);
    private volatile WebSocket ws;
    private volatile int closeCode = -1;

    FleetSession(Duration timeout) {
        this.timeout = timeout;
    }

    WebSocket.Listener listener() {
        return new WebSocket.Listener() {
            private final StringBuilder partial = new StringBuilder();

            @Override
            public void onOpen(WebSocket w) {
                ws = w;
                w.request(1);
            }

            @Override
            public CompletionStage<?> onText(WebSocket w, CharSequence data, boolean last) {
                if (partial.length() + data.length() > MAX_MESSAGE) {
                    partial.setLength(0);
                    w.sendClose(1009, "message too big");
                    return null;
                }
                partial.append(data);
                if (last) {
                    try {
                        inbox.add(Json.parseObject(partial.toString()));
                    } catch (Json.JsonException e) {
                        LOG.warning(() -> "wss: server sent bad JSON: " + e.getMessage());
                    }
                    partial.setLength(0);
                }
                w.request(1);
                return null;
            }

            @Override
            public CompletionStage<?> onClose(WebSocket w, int code, String reason) {
                closeCode = code;
                LOG.info(() -> "wss: closed by the server: " + code + " " + reason);
                inbox.add(CLOSED);
                return null;
            }

            @Override
            public void onError(WebSocket w, Throwable error) {
                LOG.info(() -> "wss: " + error.getClass().getSimpleName());
                inbox.add(CLOSED);
            }
        };
    }

    /** Sends hello and returns the welcome (sub, scope, ping_interval). */
    public Map<String, Object> hello(String appVersion) throws IOException {
        send(Json.write(Map.of("type", "hello", "client", "mobile", "app_version", appVersion)));
        return await("welcome", -1);
    }

    /** list_devices: the devices array of the answer. */
    @SuppressWarnings("unchecked")
    public List<Object> listDevices() throws IOException {
        long id = nextId.getAndIncrement();
        send(Json.write(Map.of("type", "list_devices", "id", id)));
        return (List<Object>)await("devices", id).get("devices");
    }

    public void ping() throws IOException {
        send("{\"type\":\"ping\"}");
        await("pong", -1);
    }

    /**
     * Waits up to wait for the server to close the channel; the close code (1008 for a revoked
     * token), or -1 when it stayed open. Skips any message that arrives meanwhile.
     */
    public int awaitClose(Duration wait) throws IOException {
        long deadline = System.nanoTime() + wait.toNanos();
        while (closeCode == -1) {
            long left = deadline - System.nanoTime();
            if (left <= 0 || poll(left) == CLOSED) {
                break;
            }
        }
        return closeCode;
    }

    /** The server's close code, -1 while open. */
    public int closeCode() {
        return closeCode;
    }

    private void send(String text) throws IOException {
        try {
            ws.sendText(text, true).get(timeout.toMillis(), TimeUnit.MILLISECONDS);
        } catch (Exception e) {
            if (e instanceof InterruptedException) {
                Thread.currentThread().interrupt();
            }
            throw new IOException("wss: send failed: " + e.getClass().getSimpleName(), e);
        }
    }

    private Object poll(long nanos) throws IOException {
        try {
            return inbox.poll(nanos, TimeUnit.NANOSECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("wss: interrupted", e);
        }
    }

    /* The next message of type want (and id, when id >= 0); an error answer throws. */
    @SuppressWarnings("unchecked")
    private Map<String, Object> await(String want, long id) throws IOException {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            long left = deadline - System.nanoTime();
            Object o = left > 0 ? poll(left) : null;
            if (o == null) {
                throw new IOException("wss: no " + want + " within " + timeout);
            }
            if (o == CLOSED) {
                inbox.add(CLOSED);
                throw new IOException("wss: closed (" + closeCode + ") while waiting for " + want);
            }
            Map<String, Object> m = (Map<String, Object>)o;
            Object type = m.get("type");
            boolean idMatches = id < 0 || Long.valueOf(id).equals(m.get("id"));
            if ("error".equals(type) && idMatches) {
                throw new IOException("wss: " + want + " refused: " + m.get("error"));
            }
            if (want.equals(type) && idMatches) {
                return m;
            }
        }
    }

    @Override
    public void close() {
        WebSocket w = ws;
        if (w != null && !w.isOutputClosed()) {
            CompletableFuture<WebSocket> f = w.sendClose(WebSocket.NORMAL_CLOSURE, "bye");
            try {
                f.get(timeout.toMillis(), TimeUnit.MILLISECONDS);
            } catch (Exception e) {
                w.abort();
            }
        }
    }
}
