# fleetkey-server's credential rotation (issue 14) against scripted devices, driven by fleetctl
# rotate: mtls end to end, an offline device and the interlock/force, a kill -9 mid-plan, and
# a psk rotation confirmed by the server's DTLS check against ctl_testd, a ca (trust anchor)
# rotation from ca_bundle.
if(TARGET fk_server AND TARGET fk_pki AND TARGET wss_client AND TARGET fleetctl)
    set(cases mtls late offline restart ca)
    if(TARGET ctl_testd) # defined by ctl.cmake, included before this file
        list(APPEND cases psk psk_restart)
    endif()
    foreach(c ${cases})
        add_test(NAME server_rot_${c}
            COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/server_rot.sh ${c} ${PROJECT_BINARY_DIR}/bin
                ${PROJECT_BINARY_DIR}/tmp/server_rot_${c})
        set_tests_properties(server_rot_${c} PROPERTIES TIMEOUT 120 LABELS "server;integration")
    endforeach()
endif()
