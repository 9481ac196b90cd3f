# Control listener interop tests (issue 4, section 4): real DTLS on real UDP sockets on
# 127.0.0.1, ports picked by the OS (bound to 0 and printed), every wait bounded.
add_executable(ctl_testd ${CMAKE_CURRENT_LIST_DIR}/ctl_testd.c)
target_link_libraries(ctl_testd PRIVATE fkd_ctl fk_common fk_flags)

add_executable(ctl_client ${CMAKE_CURRENT_LIST_DIR}/ctl_client.c)
target_link_libraries(ctl_client PRIVATE fkd_ctl fk_common fk_flags)

foreach(c s_client s_server fleetctl wrong_key garbage_flood rotation plaintext limits stall)
    add_test(NAME ctl_interop_${c}
        COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/ctl_interop.sh ${c} ${PROJECT_BINARY_DIR}/bin
            ${PROJECT_BINARY_DIR}/tmp/ctl_interop_${c})
    set_tests_properties(ctl_interop_${c} PROPERTIES TIMEOUT 120 LABELS "ctl;integration")
    if(TARGET fleetctl)
        set_tests_properties(ctl_interop_${c} PROPERTIES DEPENDS fleetctl)
    endif()
endforeach()

# provision-keys generate -> robot-sim flash image -> boot -> DTLS from NVS (both builds).
if(TARGET robot-sim AND TARGET provision-keys AND TARGET fleetctl)
    add_test(NAME ctl_interop_robot_sim
        COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/ctl_interop.sh robot_sim ${PROJECT_BINARY_DIR}/bin
            ${PROJECT_BINARY_DIR}/tmp/ctl_interop_robot_sim)
    set_tests_properties(ctl_interop_robot_sim PROPERTIES TIMEOUT 180 LABELS "ctl;integration")
endif()
