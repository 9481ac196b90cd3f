# Credential rotation end to end: robot-sim processes, fleetkey-server, fleetctl rotate, and
# openssl s_client (DTLS-PSK and mTLS) as the independent peer (tests/integration/rot_robot.sh).
if(TARGET fk_server)
    add_test(NAME rot_robot COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/rot_robot.sh
        ${PROJECT_BINARY_DIR}/bin ${PROJECT_BINARY_DIR}/tmp/rot_robot)
    set_tests_properties(rot_robot PROPERTIES TIMEOUT 600 LABELS "integration;rotation")
endif()
# The trust-anchor class ca: committed with a bundle that holds the server's chain, rolled back
# with one that does not (tests/integration/rot_robot_ca.sh).
if(TARGET fk_server)
    add_test(NAME rot_robot_ca COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/rot_robot_ca.sh
        ${PROJECT_BINARY_DIR}/bin ${PROJECT_BINARY_DIR}/tmp/rot_robot_ca)
    set_tests_properties(rot_robot_ca PROPERTIES TIMEOUT 600 LABELS "integration;rotation")
endif()
# A rotation answer that comes after the server's 30 s: taken (tests/integration/rot_robot_late.sh).
if(TARGET fk_server)
    add_test(NAME rot_robot_late COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/rot_robot_late.sh
        ${PROJECT_BINARY_DIR}/bin ${PROJECT_BINARY_DIR}/tmp/rot_robot_late)
    set_tests_properties(rot_robot_late PROPERTIES TIMEOUT 300 LABELS "integration;rotation")
endif()
