# OTA over the wss control channel and the OTA signing-key rotation over the network, end to
# end: production robot-sim devices, fleetkey-server, fleetctl, provision-keys (issue 7).
if(TARGET robot-sim AND TARGET fleetkey-server AND TARGET fleetctl)
    foreach(c update rotation)
        add_test(NAME ota_wss_${c}
            COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/ota_wss.sh ${c} ${PROJECT_BINARY_DIR}/bin
                ${PROJECT_SOURCE_DIR}/tests/vectors ${PROJECT_BINARY_DIR}/tmp/ota_wss_${c})
        set_tests_properties(ota_wss_${c} PROPERTIES TIMEOUT 600 SKIP_RETURN_CODE 77
            LABELS "ota;wss;integration")
    endforeach()
endif()
