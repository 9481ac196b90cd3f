# Integration tests of provision-keys generate / batch / inventory (bash scripts in batch/),
# and check_fleet, the consistency oracle the crash test runs after each recovery.
if(TARGET fk_keys AND TARGET fk_inventory)
    add_executable(check_fleet ${PROJECT_SOURCE_DIR}/tests/tools/check_fleet.c)
    target_link_libraries(check_fleet PRIVATE fk_keys fk_inventory fk_nvs fk_flags)
    foreach(t generate batch csv_errors crash)
        add_test(NAME batch_${t} COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/batch/${t}.sh)
        set_tests_properties(batch_${t} PROPERTIES TIMEOUT 900 ENVIRONMENT
            "FK_BIN=${PROJECT_BINARY_DIR}/bin;FK_TMP=${PROJECT_BINARY_DIR}/tmp/batch_${t};FK_VECTORS=${PROJECT_SOURCE_DIR}/tests/vectors")
    endforeach()
endif()
