package io.fleetkey.mobile;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.URI;
import java.time.Clock;
import java.time.Duration;
import javax.net.ssl.SSLHandshakeException;
import org.junit.jupiter.api.Test;

/** FleetkeyClient against TestTokenServer: pinning, error mapping, parsing. */
class FleetkeyClientTest {
    @Test
    void tokenRequestCarriesTheCertificateIdentity() throws Exception {
        try (TestTokenServer s = new TestTokenServer("server.p12")) {
            FleetkeyClient c = new FleetkeyClient(s.base(), Fixture.load("bob.p12"),
                                                  Clock.systemUTC(), Duration.ofSeconds(20));
            assertEquals("bob", c.clientId());
            TokenSet t = c.clientCredentials("fleet:read");
            assertEquals("fleet:read robot:command", t.scope());
            assertEquals(Duration.ofSeconds(86400),
                         Duration.between(t.obtainedAt(), t.expiresAt()));
            assertTrue(s.lastClientCn.contains("CN=bob"));
        }
    }

    @Test
    void serverFromAnotherCaIsRefusedByThePin() throws Exception {
        try (TestTokenServer s = new TestTokenServer("other/server.p12")) {
            FleetkeyClient c = new FleetkeyClient(s.base(), Fixture.load("alice.p12"),
                                                  Clock.systemUTC(), Duration.ofSeconds(20));
            assertThrows(SSLHandshakeException.class, () -> c.clientCredentials(null));
            assertEquals(0, s.tokenRequests.get());
        }
    }

    @Test
    void oauthErrorsKeepTheirCode() throws Exception {
        try (TestTokenServer s = new TestTokenServer("server.p12")) {
            FleetkeyClient c = new FleetkeyClient(s.base(), Fixture.load("alice.p12"),
                                                  Clock.systemUTC(), Duration.ofSeconds(20));
            OAuthException e =
                assertThrows(OAuthException.class, () -> c.clientCredentials("fleet:write"));
            assertEquals(400, e.status());
            assertEquals("invalid_scope", e.error());
            String spent = "rt-not-issued-secret";
            e = assertThrows(OAuthException.class, () -> c.refresh(spent));
            assertEquals("invalid_grant", e.error());
            assertEquals("spent", e.description());
            Fixture.assertNoSecretIn(e, spent);
        }
    }

    @Test
    void onlyHttpsBaseUris() throws Exception {
        MtlsCredentialStore m = Fixture.load("alice.p12");
        assertThrows(IllegalArgumentException.class,
                     ()
                         -> new FleetkeyClient(URI.create("http://127.0.0.1:1"), m,
                                               Clock.systemUTC(), Duration.ofSeconds(1)));
    }
}
