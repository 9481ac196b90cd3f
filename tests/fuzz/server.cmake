# fleetkey-server's message parser (corpus: tests/fuzz/corpus/wss_msg/).
if(TARGET fk_server)
    fk_fuzz(wss_msg ${CMAKE_CURRENT_LIST_DIR}/fuzz_wss_msg.c fk_server PkgConfig::CJSON)
    set_tests_properties(fuzz_wss_msg PROPERTIES LABELS "server;fuzz")
endif()
