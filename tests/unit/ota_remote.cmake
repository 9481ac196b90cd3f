# OTA over the control channel (device/src/ota/ota_remote.c, fkd/ota_remote.h): the request kinds
# of docs/wss-protocol.md fed as complete JSON messages, every error code, ota_key staging and
# promotion with a power cut at every flash operation. cJSON checks the JSON the device writes.
fk_unit_test(test_ota_remote SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_ota_remote.c
    ${CMAKE_CURRENT_LIST_DIR}/ota_fixture.c
    LIBS fkd fk_rotation fk_inventory fk_ota fk_nvs fk_common fk_test_mkappimage OpenSSL::Crypto
    PkgConfig::CJSON)
