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
    # The file system's share of batch, alone (bench/bench_batch.sh runs it beside batch;
    # built here: bench/ builds bench_*.c only).
    add_executable(fs_bound ${PROJECT_SOURCE_DIR}/bench/fs_bound.c)
    target_link_libraries(fs_bound PRIVATE Threads::Threads fk_flags)
    add_test(NAME batch_fs_bound COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/batch/fs_bound.sh)
    set_tests_properties(batch_fs_bound PROPERTIES TIMEOUT 300 ENVIRONMENT
        "FK_BIN=${PROJECT_BINARY_DIR}/bin;FK_TMP=${PROJECT_BINARY_DIR}/tmp/batch_fs_bound")
    # The same with --ca (an mTLS certificate per device, one P-256 keygen and signature each,
    # index appended under the CA's lock): fewer devices to stay near a minute.
    if(TARGET fk_pki)
        add_test(NAME batch_crash_ca COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/batch/crash.sh)
        set_tests_properties(batch_crash_ca PROPERTIES TIMEOUT 900 ENVIRONMENT
            "CRASH_CA=1;CRASH_N=200;FK_BIN=${PROJECT_BINARY_DIR}/bin;FK_TMP=${PROJECT_BINARY_DIR}/tmp/batch_crash_ca;FK_VECTORS=${PROJECT_SOURCE_DIR}/tests/vectors")
    endif()
endif()
