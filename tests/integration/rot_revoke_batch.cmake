# The revocation of a forced plan over many devices (issue 14, bench/README.md "10,000 robots,
# to the end"): one batch revocation (the CA index committed once), the already revoked
# skipped, the CRL, the inventory's rows and the audit rows of exactly the plan's devices.
if(TARGET fk_server) # wss_client comes with server.cmake, included later
    add_test(NAME rot_revoke_batch
        COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/rot_revoke_batch.sh ${PROJECT_BINARY_DIR}/bin
            ${PROJECT_BINARY_DIR}/tmp/rot_revoke_batch)
    set_tests_properties(rot_revoke_batch PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77
        LABELS "rot;integration")
endif()
