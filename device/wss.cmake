# The wss client (device/src/wss/: the session wss.c, wss_tls.c, wss_msg.c, the parsers
# wss_proto.c and wss_json.c, the framing ws_frame.c; fkd/wss.h), compiled into `fkd` by
# device.cmake's glob. Its framing is wslay's frame API (Debian libwslay-dev,
# scripts/packages.d/wss.txt), so fkd links wslay; only programs that use the client pull the
# objects in. fkd_wss = the core + the POSIX socket port, for the tests and robot-sim.
find_path(WSLAY_INCLUDE_DIR wslay/wslay.h REQUIRED)
find_library(WSLAY_LIB wslay REQUIRED)
if(TARGET fkd)
    target_include_directories(fkd SYSTEM PUBLIC ${WSLAY_INCLUDE_DIR})
    target_link_libraries(fkd PUBLIC ${WSLAY_LIB})
    add_library(fkd_wss INTERFACE)
    target_link_libraries(fkd_wss INTERFACE fkd fkd_net_posix)
endif()
