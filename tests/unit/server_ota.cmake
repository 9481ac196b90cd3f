# fleetkey-server's OTA delivery without sockets: the "ota" member and the OTA response bodies
# in the message parser, the image check on the Secure Boot V2 vectors, the interlock, a
# device target's state machine and the order of pushes.
if(TARGET fk_server AND TARGET fk_test_mkappimage)
    fk_unit_test(test_server_ota SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_server_ota.c
        LIBS fk_server fk_ota fk_test_mkappimage fk_common)
    set_tests_properties(test_server_ota PROPERTIES LABELS "server")
endif()
