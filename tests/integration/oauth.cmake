# OAuth2 end to end (issue 16): fleetkey-server's token endpoint, revocation and wss phones,
# fleetctl login/token/whoami/logout, checked by python3/openssl/JDK peers.
if(TARGET fk_server AND TARGET fk_client)
    foreach(c login refresh concurrent binding revoke reuse tamper wss crosscheck)
        add_test(NAME oauth_${c}
            COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/oauth.sh ${c} ${PROJECT_BINARY_DIR}/bin
                ${PROJECT_BINARY_DIR}/tmp/oauth_${c})
        set_tests_properties(oauth_${c} PROPERTIES TIMEOUT 180 LABELS "oauth;integration"
            SKIP_RETURN_CODE 77)
    endforeach()
endif()
