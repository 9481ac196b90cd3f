package io.fleetkey.mobile;

/**
 * The server refused an OAuth2 request (RFC 6749 5.2) or answered with something that is not a
 * token response. Carries the HTTP status and the RFC error code; the message holds both and
 * never a token (error_description is kept apart, in {@link #description()}, since it is the
 * server's text).
 */
public final class OAuthException extends Exception {
    private static final long serialVersionUID = 1L;
    private final int status;
    private final String error;
    private final String description;

    public OAuthException(int status, String error, String description) {
        super("token endpoint: HTTP " + status + " " + error);
        this.status = status;
        this.error = error;
        this.description = description;
    }

    public int status() {
        return status;
    }

    /** invalid_request, invalid_client, invalid_grant, invalid_scope, ... or "bad_response". */
    public String error() {
        return error;
    }

    public String description() {
        return description;
    }
}
