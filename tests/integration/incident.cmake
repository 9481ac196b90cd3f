# fleetctl incident ota-key-compromised end to end: fleetkey-server, three production robots
# (one offline), new key, dual-signed push, forced offline robot, retirement, report, re-runs.
if(TARGET robot-sim AND TARGET fleetkey-server AND TARGET fleetctl)
    add_test(NAME incident_ota_key COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/incident.sh
        ${PROJECT_BINARY_DIR}/bin ${PROJECT_SOURCE_DIR}/tests/vectors
        ${PROJECT_BINARY_DIR}/tmp/incident_ota_key)
    set_tests_properties(incident_ota_key PROPERTIES TIMEOUT 900 SKIP_RETURN_CODE 77
        LABELS "ota;wss;integration")
endif()
