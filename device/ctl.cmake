# The DTLS-PSK control listener (fkd_ctl: device/src/ctl*.c, dtls_client.c; no OS header) and
# the POSIX port of its socket/clock/entropy interface (fkd/net.h). Included from
# device/CMakeLists.txt; kept apart from device.cmake so the two areas never edit one list.
add_library(fkd_net_posix STATIC ${CMAKE_CURRENT_LIST_DIR}/port/posix/net_posix.c)
target_include_directories(fkd_net_posix PUBLIC ${CMAKE_CURRENT_LIST_DIR}/include)
target_link_libraries(fkd_net_posix PRIVATE fk_flags)

add_library(fkd_ctl STATIC
    ${CMAKE_CURRENT_LIST_DIR}/src/ctl.c
    ${CMAKE_CURRENT_LIST_DIR}/src/ctl_proto.c
    ${CMAKE_CURRENT_LIST_DIR}/src/dtls_client.c)
target_include_directories(fkd_ctl PUBLIC ${CMAKE_CURRENT_LIST_DIR}/include)
target_link_libraries(fkd_ctl PUBLIC fk_mbedtls fkd_net_posix PRIVATE fk_flags)
