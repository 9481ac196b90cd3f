# A kill between the revocation's CA commit and its audit rows (issue 14): the restarted server
# writes the lost rotation.revoked rows, marked recovered, once each.
if(TARGET fk_server) # wss_client comes with server.cmake, included later
    add_test(NAME rot_revoke_crash
        COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/rot_revoke_crash.sh ${PROJECT_BINARY_DIR}/bin
            ${PROJECT_BINARY_DIR}/tmp/rot_revoke_crash)
    set_tests_properties(rot_revoke_crash PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77
        LABELS "rot;integration")
    if(TARGET PkgConfig::LIBPQ) # the same on a PostgreSQL inventory: a shared plan
        add_test(NAME rot_revoke_crash_pg
            COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/rot_revoke_crash.sh ${PROJECT_BINARY_DIR}/bin
                ${PROJECT_BINARY_DIR}/tmp/rot_revoke_crash_pg)
        set_tests_properties(rot_revoke_crash_pg PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77
            LABELS "rot;pg;integration" ENVIRONMENT "FK_PG=1")
    endif()
endif()
