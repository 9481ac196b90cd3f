# OAuth2 token primitives (src/oauth): base64url, ES256 JWT sign/verify, claims, JWKS, forms.
if(TARGET fk_oauth)
    fk_unit_test(test_oauth SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_oauth.c
        LIBS fk_oauth fk_common OpenSSL::Crypto PkgConfig::CJSON)
    set_tests_properties(test_oauth PROPERTIES LABELS "oauth")
endif()
