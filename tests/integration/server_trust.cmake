# fleetkey-server's chain and CRL verdicts (with the store's signatures verified once at load,
# src/server/auth_trust.c) against `openssl verify` on the same files (issue 15).
if(TARGET fk_server AND TARGET fk_pki)
    add_test(NAME server_trust
        COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/server_trust.sh ${PROJECT_BINARY_DIR}/bin
            ${PROJECT_BINARY_DIR}/tmp/server_trust)
    set_tests_properties(server_trust PROPERTIES TIMEOUT 180 LABELS "server;integration")
endif()
