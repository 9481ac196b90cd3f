# robot-sim --fleet as tasks on one worker with one connection slot, and as thread pairs
# (--fleet-threads 0), rotated psk,mtls by one plan through a real fleetkey-server.
if(TARGET fk_server) # wss_client comes with server.cmake, included later
    add_test(NAME robot_sim_fleet_sched
        COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/robot_sim_fleet_sched.sh ${PROJECT_BINARY_DIR}/bin
            ${PROJECT_BINARY_DIR}/tmp/robot_sim_fleet_sched)
    set_tests_properties(robot_sim_fleet_sched PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77
        LABELS "robot-sim;rot;integration")
endif()
