# Fault campaign (issue 15, "Reliability"): fleetkey-server killed with SIGKILL at >= 20 random
# moments of a robot-sim fleet's mtls rotation and restarted each time (FK_FAULT_SEED replays
# the moments); slowloris connections dropped after handshake_timeout while a normal client is
# served. The batch side is batch_crash / batch_crash_ca (batch.cmake).
if(TARGET fk_server) # wss_client comes with server.cmake, included later
    add_test(NAME fault_server_rot
        COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/fault_server_rot.sh ${PROJECT_BINARY_DIR}/bin
            ${PROJECT_BINARY_DIR}/tmp/fault_server_rot)
    set_tests_properties(fault_server_rot PROPERTIES TIMEOUT 600 SKIP_RETURN_CODE 77
        LABELS "fault;server;rot;integration")
    add_test(NAME fault_slowloris
        COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/fault_slowloris.sh ${PROJECT_BINARY_DIR}/bin
            ${PROJECT_BINARY_DIR}/tmp/fault_slowloris)
    set_tests_properties(fault_slowloris PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77
        LABELS "fault;server;integration")
endif()
if(TARGET provision-keys AND TARGET robot-sim)
    add_test(NAME fault_bad_input
        COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/fault_bad_input.sh ${PROJECT_BINARY_DIR}/bin
            ${PROJECT_BINARY_DIR}/tmp/fault_bad_input)
    set_tests_properties(fault_bad_input PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77
        LABELS "fault;integration")
endif()
