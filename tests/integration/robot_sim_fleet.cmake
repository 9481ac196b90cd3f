# robot-sim --fleet (issue 14, rehearsal): 20 robots in one process with 10 % of each fault
# (offline, dropped confirmation, power cut during the rotation) rotated mtls through a real
# fleetkey-server; every robot ends with a working credential, the plan's counts match.
if(TARGET fk_server) # wss_client comes with server.cmake, included later
    add_test(NAME robot_sim_fleet
        COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/robot_sim_fleet.sh ${PROJECT_BINARY_DIR}/bin
            ${PROJECT_BINARY_DIR}/tmp/robot_sim_fleet)
    set_tests_properties(robot_sim_fleet PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77
        LABELS "robot-sim;rot;integration")
endif()
