fk_fuzz(ctl_proto ${CMAKE_CURRENT_LIST_DIR}/fuzz_ctl_proto.c fkd_ctl)
fk_fuzz(ctl_hello ${CMAKE_CURRENT_LIST_DIR}/fuzz_ctl_hello.c fkd_ctl)
