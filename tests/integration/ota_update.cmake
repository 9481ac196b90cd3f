# OTA updates on robot-sim end to end (tests/integration/ota_update.sh): sign with
# provision-keys, stream with `robot-sim ota`, boot, confirm, roll back, refuse, power cuts.
add_test(NAME ota_update COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/ota_update.sh
    ${PROJECT_BINARY_DIR}/bin ${PROJECT_SOURCE_DIR}/tests/vectors
    ${PROJECT_BINARY_DIR}/tmp/ota_update)
set_tests_properties(ota_update PROPERTIES SKIP_RETURN_CODE 77)
