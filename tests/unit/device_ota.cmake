# Device OTA (device/src/ota/ota.c; device/src/boot/otadata.c, sbv2_verify.c, app_image.c): the
# Secure Boot V2 verifier on espsecure's vectors, otadata, streaming updates, rollback,
# anti-rollback and the power-cut sweep. Signed test images come from tests/tools/mkappimage + the host signer.
fk_unit_test(test_device_ota SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_device_ota.c
    ${CMAKE_CURRENT_LIST_DIR}/ota_fixture.c
    LIBS fkd fk_ota fk_nvs fk_common fk_test_mkappimage OpenSSL::Crypto)
