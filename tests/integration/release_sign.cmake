# scripts/release-sign: the key from OTA_SIGNING_KEY reaches provision-keys through pipes only
# (checked under strace), the release verifies, no key file is left anywhere.
if(TARGET provision-keys)
    add_test(NAME release_sign COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/release_sign.sh
        ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR}/bin ${PROJECT_BINARY_DIR}/tmp/release_sign)
    set_tests_properties(release_sign PROPERTIES SKIP_RETURN_CODE 77 LABELS "ota;integration")
endif()
