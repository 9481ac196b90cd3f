# provision-keys flash against robot-sim's download mode on a real pty (tests/integration/
# flash.sh): happy paths plain and encrypted, read-back, wrong robot, injected faults.
add_test(NAME flash_integration COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/flash.sh
    ${PROJECT_BINARY_DIR}/bin ${PROJECT_SOURCE_DIR}/tests/vectors
    ${PROJECT_BINARY_DIR}/tmp/flash_integration)
# An unmodified esptool-js (npm) writes into robot-sim through the ROM loader; skipped (77)
# without node/npm or registry access.
add_test(NAME flash_esptool_js COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/flash_esptool_js.sh
    ${PROJECT_BINARY_DIR}/bin ${PROJECT_SOURCE_DIR}/tests/vectors
    ${PROJECT_BINARY_DIR}/tmp/flash_esptool_js ${PROJECT_SOURCE_DIR})
set_tests_properties(flash_esptool_js PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 600)
