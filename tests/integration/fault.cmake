# Fault campaign (issue 15, "Reliability"; docs/server.md, "Fault campaign"):
#   fault_server_rot  fleetkey-server killed with SIGKILL at >= 20 random moments of a
#                     robot-sim fleet's mtls rotation, restarted each time (FK_FAULT_SEED
#                     replays the moments)
#   fault_server_rot_psk, _ca, _camtlspsk  the same with a psk, a ca, a ca,mtls,psk plan
#   fault_slowloris   connections without a handshake or request dropped after
#                     handshake_timeout while a normal client is served
#   fault_bad_input   malformed CSV, truncated manifest and NVS images: named, nothing lost
# The batch side is batch_crash / batch_crash_ca (batch.cmake). The scripts skip (77) when a
# program they need is not built; wss_client comes with server.cmake, included later.
if(TARGET fk_server)
    foreach(t server_rot slowloris bad_input)
        add_test(NAME fault_${t}
            COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/fault_${t}.sh ${PROJECT_BINARY_DIR}/bin
                ${PROJECT_BINARY_DIR}/tmp/fault_${t})
        set_tests_properties(fault_${t} PROPERTIES TIMEOUT 600 SKIP_RETURN_CODE 77
            LABELS "fault;integration")
    endforeach()
    # The same campaign over the other classes the server rotates, and all three in one plan.
    foreach(c psk ca ca,mtls,psk)
        string(REPLACE "," "" n ${c})
        add_test(NAME fault_server_rot_${n}
            COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/fault_server_rot.sh ${PROJECT_BINARY_DIR}/bin
                ${PROJECT_BINARY_DIR}/tmp/fault_server_rot_${n} ${c})
        set_tests_properties(fault_server_rot_${n} PROPERTIES TIMEOUT 600 SKIP_RETURN_CODE 77
            LABELS "fault;integration")
    endforeach()
endif()
