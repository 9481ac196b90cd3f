# PostgreSQL inventory (issue 15). Each case starts its own throw-away cluster
# (tests/integration/pg_lib.sh) and skips (77) only when the PostgreSQL binaries are absent.
if(TARGET fk_inventory AND TARGET PkgConfig::LIBPQ)
    # The inventory unit tests again, on a database of that cluster (inv_location.h). Deferred
    # to the end of tests/: the unit fragments that define the targets are included after this
    # one (the fragments are globbed in name order).
    function(fk_pg_unit_tests)
        foreach(t test_inventory test_inventory_presence test_rotation test_inventory_plans)
            if(TARGET ${t})
                target_link_libraries(${t} PRIVATE PkgConfig::LIBPQ)
                target_compile_definitions(${t} PRIVATE FK_HAVE_PG)
                add_test(NAME ${t}_pg COMMAND bash ${PROJECT_SOURCE_DIR}/tests/integration/inventory_pg.sh
                    $<TARGET_FILE:${t}> ${PROJECT_BINARY_DIR}/tmp/${t}_pg)
                set_tests_properties(${t}_pg PROPERTIES TIMEOUT 180 SKIP_RETURN_CODE 77
                    LABELS "pg;integration" ENVIRONMENT
                    "FK_VECTORS=${PROJECT_SOURCE_DIR}/tests/vectors;FK_BIN=${PROJECT_BINARY_DIR}/bin")
            endif()
        endforeach()
        # provision-keys batch into PostgreSQL: the batch scripts with FK_PG=1 (batch/lib.sh),
        # the crash test's kill -9 points included (a killed client's transaction and writer
        # lock are dropped by the server).
        if(TARGET check_fleet)
            foreach(t batch crash)
                add_test(NAME batch_${t}_pg COMMAND bash
                    ${PROJECT_SOURCE_DIR}/tests/integration/batch/${t}.sh)
                set_tests_properties(batch_${t}_pg PROPERTIES TIMEOUT 900 SKIP_RETURN_CODE 77
                    LABELS "pg;integration" ENVIRONMENT
                    "FK_PG=1;CRASH_N=600;FK_BIN=${PROJECT_BINARY_DIR}/bin;FK_TMP=${PROJECT_BINARY_DIR}/tmp/batch_${t}_pg;FK_VECTORS=${PROJECT_SOURCE_DIR}/tests/vectors")
            endforeach()
        endif()
    endfunction()
    cmake_language(DEFER CALL fk_pg_unit_tests)
endif()
# Two fleetkey-server instances, a batch and generate runs writing one PostgreSQL inventory at
# once; robots split across the servers, moved from one to the other, one revoked.
if(TARGET fk_server AND TARGET PkgConfig::LIBPQ)
    add_test(NAME pg_fleet COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/pg_fleet.sh
        ${PROJECT_BINARY_DIR}/bin ${PROJECT_BINARY_DIR}/tmp/pg_fleet)
    set_tests_properties(pg_fleet PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77
        LABELS "pg;server;integration")
endif()
# One mtls rotation driven by two instances on one PostgreSQL inventory, robots moved between
# them mid-plan (rotation plans in the inventory, src/server/rot_shared.c).
if(TARGET fk_server AND TARGET PkgConfig::LIBPQ)
    add_test(NAME pg_rot COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/pg_rot.sh
        ${PROJECT_BINARY_DIR}/bin ${PROJECT_BINARY_DIR}/tmp/pg_rot)
    set_tests_properties(pg_rot PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77
        LABELS "pg;server;integration")
endif()
# provision-keys rotate ota-key and sign --inventory on a PostgreSQL inventory.
if(TARGET PkgConfig::LIBPQ)
    add_test(NAME rotation_cli_pg COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/rotation_cli.sh
        ${PROJECT_BINARY_DIR}/bin ${PROJECT_SOURCE_DIR}/tests/vectors
        ${PROJECT_BINARY_DIR}/tmp/rotation_cli_pg)
    set_tests_properties(rotation_cli_pg PROPERTIES TIMEOUT 180 SKIP_RETURN_CODE 77
        LABELS "pg;integration" ENVIRONMENT "FK_PG=1")
endif()
