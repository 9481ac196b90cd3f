# The DTLS-PSK control listener (device/src/ctl/: ctl.c, ctl_proto.c, dtls_client.c: no OS
# header) and the POSIX port of its socket/clock/entropy interface (fkd/net.h). Included from
# device/CMakeLists.txt after device.cmake, whose `fkd` core library already compiles every
# device/src .c file, the listener's included; this file adds the port and a name to link
# against.
add_library(fkd_net_posix STATIC ${CMAKE_CURRENT_LIST_DIR}/port/posix/net_posix.c)
target_include_directories(fkd_net_posix PUBLIC ${CMAKE_CURRENT_LIST_DIR}/include)
target_link_libraries(fkd_net_posix PRIVATE fk_flags)

if(TARGET fkd)
    # fkd_ctl = the core (which holds the listener) + the POSIX socket port.
    add_library(fkd_ctl INTERFACE)
    target_link_libraries(fkd_ctl INTERFACE fkd fkd_net_posix)
    # Whatever runs the core on POSIX (robot-sim) gets the socket port with it.
    if(TARGET fkd_posix)
        target_link_libraries(fkd_posix PUBLIC fkd_net_posix)
    endif()
else()
    add_library(fkd_ctl STATIC
        ${CMAKE_CURRENT_LIST_DIR}/src/ctl/ctl.c
        ${CMAKE_CURRENT_LIST_DIR}/src/ctl/ctl_proto.c
        ${CMAKE_CURRENT_LIST_DIR}/src/ctl/dtls_client.c)
    target_include_directories(fkd_ctl PUBLIC ${CMAKE_CURRENT_LIST_DIR}/include
        PRIVATE ${CMAKE_CURRENT_LIST_DIR}/src)
    target_link_libraries(fkd_ctl PUBLIC fk_mbedtls fkd_net_posix PRIVATE fk_flags)
endif()
