# Control listener interop tests (issue 4, section 4): real DTLS on real UDP sockets on
# 127.0.0.1, ports picked by the OS (bound to 0 and printed), every wait bounded.
add_executable(ctl_testd ${CMAKE_CURRENT_LIST_DIR}/ctl_testd.c)
target_link_libraries(ctl_testd PRIVATE fkd_ctl fk_common fk_flags)
