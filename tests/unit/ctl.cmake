fk_unit_test(test_ctl_proto SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_ctl_proto.c LIBS fkd_ctl)
