# fleetkey-server's credential rotation (issue 14): an mtls rotation end to end against a
# scripted device, revocation checked by the server's own handshake refusal.
if(TARGET fk_server AND TARGET fk_pki AND TARGET wss_client)
    add_test(NAME server_rot_mtls
        COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/server_rot.sh ${PROJECT_BINARY_DIR}/bin
            ${PROJECT_BINARY_DIR}/tmp/server_rot_mtls)
    set_tests_properties(server_rot_mtls PROPERTIES TIMEOUT 120 LABELS "server;integration")
endif()
