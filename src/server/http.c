/* The answers of the admin HTTP API (http.c): see admin_internal.h. Below every route file
 * (admin.c, admin_ota.c, admin_rot.c), so that each of them calls down into it and none of
 * them calls another. */
#include "admin_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int fk_srv_http_reply(struct lws *wsi, struct http_sess *h, unsigned status, const char *ctype,
                      const char *body, size_t len) {
    return fk_srv_http_reply_auth(wsi, h, status, ctype, body, len, NULL);
}

int fk_srv_http_reply_auth(struct lws *wsi, struct http_sess *h, unsigned status, const char *ctype,
                           const char *body, size_t len, const char *www_authenticate) {
    unsigned char hdr[LWS_PRE + 512];
    unsigned char *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof hdr - 1;
    free(h->buf);
    h->buf = malloc(LWS_PRE + len + 1);
    if (h->buf == NULL) {
        return -1;
    }
    memcpy(h->buf + LWS_PRE, body, len);
    h->len = len;
    if (lws_add_http_common_headers(wsi, status, ctype, (lws_filepos_t)len, &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                     (const unsigned char *)"no-store", 8, &p, end) ||
        (www_authenticate != NULL &&
         lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_WWW_AUTHENTICATE,
                                      (const unsigned char *)www_authenticate,
                                      (int)strlen(www_authenticate), &p, end)) ||
        lws_finalize_write_http_header(wsi, start, &p, end)) {
        return -1;
    }
    lws_callback_on_writable(wsi);
    return 0;
}

int fk_srv_http_json_error(struct lws *wsi, struct http_sess *h, unsigned status, const char *msg) {
    char body[256];
    int n = snprintf(body, sizeof body, "{\"error\":\"%s\"}\n", msg);
    return fk_srv_http_reply(wsi, h, status, "application/json", body, (size_t)n);
}

int fk_srv_http_json(struct lws *wsi, struct http_sess *h, unsigned status, cJSON *o) {
    char *text = o != NULL ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (text == NULL) {
        return -1;
    }
    int r = fk_srv_http_reply(wsi, h, status, "application/json", text, strlen(text));
    cJSON_free(text);
    return r;
}
