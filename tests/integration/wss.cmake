# Device wss client integration tests (issue 6, sections 3 and 5): robot-sim on real TCP on
# 127.0.0.1 against openssl s_server (TLS-level refusals, the client certificate) and, when it
# is built, fleetkey-server. Ports are picked by the OS; every wait is bounded.
if(TARGET robot-sim AND TARGET provision-keys)
    foreach(c client_cert nvs_creds bad_frames masked_frame server_close
            client_other cn_only san_over_cn wrong_host other_ca expired not_yet backoff)
        add_test(NAME wss_${c}
            COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/wss.sh ${c} ${PROJECT_BINARY_DIR}/bin
                ${PROJECT_BINARY_DIR}/tmp/wss_${c})
        set_tests_properties(wss_${c} PROPERTIES TIMEOUT 120 LABELS "wss;integration")
    endforeach()
    # robot-sim <-> fleetkey-server: connects, hello recorded, keep-alive, 403 for a stranger
    if(TARGET fleetkey-server)
        add_test(NAME wss_server
            COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/wss.sh server ${PROJECT_BINARY_DIR}/bin
                ${PROJECT_BINARY_DIR}/tmp/wss_server)
        set_tests_properties(wss_server PROPERTIES TIMEOUT 120 LABELS "wss;integration")
    endif()
endif()
