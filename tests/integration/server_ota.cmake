# fleetkey-server's OTA delivery (issue 7) against a scripted device (wss_client's ota-recv
# steps): the admin API's refusals and interlock, the chunk stream compared with the file, a
# disconnect mid-transfer, device refusals, OTA-key rotation delivery, fleetctl ota.
if(TARGET fk_server AND TARGET fk_pki AND TARGET wss_client)
    foreach(c admin push disconnect refused rotation fleetctl)
        add_test(NAME server_ota_${c}
            COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/server_ota.sh ${c} ${PROJECT_BINARY_DIR}/bin
                ${PROJECT_SOURCE_DIR}/tests/vectors ${PROJECT_BINARY_DIR}/tmp/server_ota_${c})
        set_tests_properties(server_ota_${c} PROPERTIES TIMEOUT 180 LABELS "server;integration")
    endforeach()
endif()
