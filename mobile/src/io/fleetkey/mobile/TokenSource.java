package io.fleetkey.mobile;

import java.io.IOException;

/**
 * The token endpoint as {@link TokenRefresher} sees it; {@link FleetkeyClient} implements it over
 * HTTPS. Implementations must be thread-safe and must keep tokens out of messages and logs.
 */
public interface TokenSource {
    /** grant_type=client_credentials for scope (null: the server's default set). */
    TokenSet clientCredentials(String scope) throws IOException, OAuthException;

    /** grant_type=refresh_token; the old refresh token is spent by this call. */
    TokenSet refresh(String refreshToken) throws IOException, OAuthException;

    /** RFC 7009 revocation; hint is "access_token" or "refresh_token". */
    void revoke(String token, String hint) throws IOException, OAuthException;
}
