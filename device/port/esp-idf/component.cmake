# The `fleetkey` ESP-IDF component (included by device/CMakeLists.txt when ESP_PLATFORM is set).
# Sources: every device/src .c file (the core, which includes no OS header) and the ESP-IDF port
# (this folder). Configuration: device/Kconfig, which menuconfig picks up from the component
# folder. The wss client's framing is wslay's frame API; ESP-IDF does not ship wslay, so the
# project provides it as a component named `wslay` (docs/esp-idf.md shows the three lines).
set(fkd_root ${CMAKE_CURRENT_LIST_DIR}/../..)
file(GLOB_RECURSE fkd_srcs ${fkd_root}/src/*.c)
file(GLOB fkd_port_srcs ${CMAKE_CURRENT_LIST_DIR}/*.c)
idf_component_register(
    SRCS ${fkd_srcs} ${fkd_port_srcs}
    INCLUDE_DIRS ${fkd_root}/include ${CMAKE_CURRENT_LIST_DIR}
    PRIV_INCLUDE_DIRS ${fkd_root}/src
    REQUIRES mbedtls esp_partition log
    PRIV_REQUIRES app_update bootloader_support efuse esp_hw_support esp_system esp_timer
        freertos lwip nvs_flash wslay)
# Every file sees sdkconfig.h: the core includes no ESP-IDF header, yet store.c compiles the
# Kconfig fallbacks out when CONFIG_PRODUCTION_BUILD is set (the same as scripts/check-idf).
target_compile_options(${COMPONENT_LIB} PRIVATE -std=gnu11 -Wall -Wextra -include sdkconfig.h)
