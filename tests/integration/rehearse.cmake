# scripts/rehearse, the rotation rehearsal in one command, on a small fleet: its gates pass.
if(TARGET fk_server) # wss_client comes with server.cmake, included later
    add_test(NAME rehearse COMMAND sh ${PROJECT_SOURCE_DIR}/scripts/rehearse --devices 30
        --faults 10 --build ${PROJECT_BINARY_DIR} --keep ${PROJECT_BINARY_DIR}/tmp/rehearse)
    set_tests_properties(rehearse PROPERTIES TIMEOUT 600 LABELS "integration;rotation")
endif()
