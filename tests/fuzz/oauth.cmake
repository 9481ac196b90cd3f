# The OAuth2 parsers: JWT verification, claims, base64url, form bodies (corpus: corpus/jwt/).
if(TARGET fk_oauth)
    fk_fuzz(jwt ${CMAKE_CURRENT_LIST_DIR}/fuzz_jwt.c fk_oauth fk_common OpenSSL::Crypto)
    set_tests_properties(fuzz_jwt PROPERTIES LABELS "oauth;fuzz")
endif()
# The server's token state file (corpus: corpus/oauth_state/).
if(TARGET fk_oauth)
    fk_fuzz(oauth_state ${CMAKE_CURRENT_LIST_DIR}/fuzz_oauth_state.c fk_oauth fk_common)
    set_tests_properties(fuzz_oauth_state PROPERTIES LABELS "oauth;fuzz")
endif()
