# provision-keys flash against robot-sim's download mode on a real pty (tests/integration/
# flash.sh): happy paths plain and encrypted, read-back, wrong robot, injected faults.
add_test(NAME flash_integration COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/flash.sh
    ${PROJECT_BINARY_DIR}/bin ${PROJECT_SOURCE_DIR}/tests/vectors
    ${PROJECT_BINARY_DIR}/tmp/flash_integration)
