# provision-keys backup/restore end to end: split, delete, rebuild, same public key, sign.
if(TARGET provision-keys)
    add_test(NAME key_backup COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/key_backup.sh
        ${PROJECT_BINARY_DIR}/bin ${PROJECT_BINARY_DIR}/tmp/key_backup)
    set_tests_properties(key_backup PROPERTIES SKIP_RETURN_CODE 77 LABELS "keys;integration")
endif()
