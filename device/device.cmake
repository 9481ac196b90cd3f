# Device library targets (included by device/CMakeLists.txt).
#   fkd        the core: every device/src/<group>/*.c except the shared format (fkd_format),
#              pure C, no OS headers, mbedTLS for crypto. Other device modules (the control
#              listener, the ROM responder) drop their .c files into a folder of device/src
#              (device/README.md) and are picked up here.
#   fkd_posix  the POSIX port: flash image file, sdkconfig file, getenv, stderr logging.
file(GLOB_RECURSE FKD_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/src/*.c)
list(REMOVE_ITEM FKD_SOURCES ${CMAKE_CURRENT_LIST_DIR}/src/nvs/nvs_format.c)
add_library(fkd STATIC ${FKD_SOURCES})
target_include_directories(fkd PUBLIC ${CMAKE_CURRENT_LIST_DIR}/include)
# device/src itself, privately: mbedtls_compat.h, the one file of mbedTLS version differences,
# shared by the groups that use TLS or X.509 (ctl, wss, ota, boot).
target_include_directories(fkd PRIVATE ${CMAKE_CURRENT_LIST_DIR}/src)
target_link_libraries(fkd PUBLIC fkd_format fk_mbedtls PRIVATE fk_flags)

add_library(fkd_posix STATIC ${CMAKE_CURRENT_LIST_DIR}/port/posix/flash_file.c)
target_include_directories(fkd_posix PUBLIC ${CMAKE_CURRENT_LIST_DIR}/port/posix)
target_link_libraries(fkd_posix PUBLIC fkd PRIVATE fk_flags)
