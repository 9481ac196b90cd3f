# Virtual eFuse + simulated Secure Boot V2 bootloader end to end (provision-keys efuse,
# robot-sim), against the espsecure vectors.
add_test(NAME efuse_secure_boot COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/efuse.sh
    ${PROJECT_BINARY_DIR}/bin ${PROJECT_SOURCE_DIR}/tests/vectors
    ${PROJECT_BINARY_DIR}/tmp/efuse_secure_boot)
