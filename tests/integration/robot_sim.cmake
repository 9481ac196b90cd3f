# robot-sim end to end: images from the NVS vectors and from provision-keys, both builds,
# policy refusals, env overrides, the nvs subcommand and a power-cut sweep on the image file.
add_test(NAME robot_sim COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/robot_sim.sh
    ${PROJECT_BINARY_DIR}/bin ${PROJECT_SOURCE_DIR}/tests/vectors
    ${PROJECT_BINARY_DIR}/tmp/robot_sim)
add_test(NAME robot_sim_provisioned COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/robot_sim_provisioned.sh
    ${PROJECT_BINARY_DIR}/bin ${PROJECT_BINARY_DIR}/tmp/robot_sim_provisioned)
set_tests_properties(robot_sim_provisioned PROPERTIES SKIP_RETURN_CODE 77)
