# Wi-Fi re-provisioning portal end to end: robot-sim --portal-listen driven by curl.
add_test(NAME robot_sim_portal COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/portal.sh
    ${PROJECT_BINARY_DIR}/bin ${PROJECT_BINARY_DIR}/tmp/robot_sim_portal)
set_tests_properties(robot_sim_portal PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 120)
