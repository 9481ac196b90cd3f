# Virtual eFuse (device/src/boot/efuse.c) and Secure Boot V2 against burned key digests: the
# espsecure vectors, and the bootloader refusing an app signed by another key.
fk_unit_test(test_device_efuse SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_device_efuse.c
    ${CMAKE_CURRENT_LIST_DIR}/ota_fixture.c
    LIBS fkd fk_ota fk_nvs fk_common fk_test_mkappimage OpenSSL::Crypto)
