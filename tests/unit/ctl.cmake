fk_unit_test(test_ctl_proto SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_ctl_proto.c LIBS fkd_ctl)

# fk_ctl (the host's DTLS PSK client) against fkd_ctl's listener in a thread of the test.
if(TARGET fk_ctl)
    fk_unit_test(test_ctl SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_ctl.c
        LIBS fk_ctl fkd_ctl fk_common Threads::Threads)
    set_tests_properties(test_ctl PROPERTIES LABELS "ctl" TIMEOUT 60)
endif()
