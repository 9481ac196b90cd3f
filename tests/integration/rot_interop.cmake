# Credential rotation on a real DTLS listener (issue 14): rot_stage / rot_commit through the
# device's handler (rot_testd), openssl s_client with the old and the new PSK at each step.
if(TARGET fkd_posix)
    add_executable(rot_testd ${CMAKE_CURRENT_LIST_DIR}/rot_testd.c)
    target_link_libraries(rot_testd PRIVATE fkd_posix fkd_ctl fk_common fk_flags)
    add_test(NAME rot_interop_psk
        COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/rot_interop.sh ${PROJECT_BINARY_DIR}/bin
            ${PROJECT_BINARY_DIR}/tmp/rot_interop_psk)
    set_tests_properties(rot_interop_psk PROPERTIES TIMEOUT 180 LABELS "ctl;rot;integration")
endif()

# robot-sim: --help lists every option; --power-cut-at-write during the boot's rotation repair.
if(TARGET robot-sim)
    add_test(NAME robot_sim_rot COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/robot_sim_rot.sh
        ${PROJECT_BINARY_DIR}/bin ${PROJECT_SOURCE_DIR}/tests/vectors ${PROJECT_SOURCE_DIR}
        ${PROJECT_BINARY_DIR}/tmp/robot_sim_rot)
    set_tests_properties(robot_sim_rot PROPERTIES TIMEOUT 180 LABELS "rot;integration")
endif()
