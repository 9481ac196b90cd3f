# fleetkey-server's message parser (corpus: tests/fuzz/corpus/wss_msg/) and its reader of
# saved jobs.
if(TARGET fk_server)
    fk_fuzz(wss_msg ${CMAKE_CURRENT_LIST_DIR}/fuzz_wss_msg.c fk_server PkgConfig::CJSON)
    set_tests_properties(fuzz_wss_msg PROPERTIES LABELS "server;fuzz")
    # its reader of saved update jobs (corpus: tests/fuzz/corpus/ota_job/)
    fk_fuzz(ota_job ${CMAKE_CURRENT_LIST_DIR}/fuzz_ota_job.c fk_server PkgConfig::CJSON)
    set_tests_properties(fuzz_ota_job PROPERTIES LABELS "server;fuzz")
    # its reader of saved rotation jobs, files and shared rows (corpus: corpus/rot_job/)
    fk_fuzz(rot_job ${CMAKE_CURRENT_LIST_DIR}/fuzz_rot_job.c fk_server PkgConfig::CJSON)
    set_tests_properties(fuzz_rot_job PROPERTIES LABELS "server;fuzz")
endif()
