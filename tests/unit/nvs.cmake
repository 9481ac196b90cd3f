fk_unit_test(test_nvs SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_nvs.c
    LIBS fk_nvs OpenSSL::Crypto PkgConfig::CJSON)
# Host writer -> device runtime: our images mounted and read by device/src/nvs/nvs.c.
if(TARGET fkd)
    fk_unit_test(test_nvs_device SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_nvs_device.c
        LIBS fk_nvs fkd)
endif()
