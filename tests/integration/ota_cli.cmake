# provision-keys sign/verify/signature-info/key-digest end to end, our signatures checked by
# the openssl command line, and signing with a SoftHSM2 token through PKCS#11.
add_test(NAME ota_cli COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/ota_cli.sh
    ${PROJECT_BINARY_DIR}/bin ${PROJECT_SOURCE_DIR}/tests/vectors ${PROJECT_BINARY_DIR}/tmp/ota_cli)
add_test(NAME ota_pkcs11 COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/ota_pkcs11.sh
    ${PROJECT_BINARY_DIR}/bin ${PROJECT_SOURCE_DIR}/tests/vectors ${PROJECT_BINARY_DIR}/tmp/ota_pkcs11)
# 77: SoftHSM2 or the pkcs11 engine is not installed (scripts/packages.d/ota.txt has them).
set_tests_properties(ota_pkcs11 PROPERTIES SKIP_RETURN_CODE 77)
