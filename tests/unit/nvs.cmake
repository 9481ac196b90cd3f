fk_unit_test(test_nvs SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_nvs.c
    LIBS fk_nvs OpenSSL::Crypto PkgConfig::CJSON)
