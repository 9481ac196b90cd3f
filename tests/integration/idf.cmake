# The ESP-IDF component (issue 18). idf_kconfig and idf_partitions need no ESP-IDF tree;
# check_idf compiles the component against one when IDF_PATH is set in the environment (it
# is not a Debian package: docs/esp-idf.md) and is reported skipped otherwise.
add_test(NAME idf_kconfig COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/idf.sh kconfig
    ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR}/tmp/idf_kconfig)
set_tests_properties(idf_kconfig PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77 LABELS "device")
if(TARGET provision-keys)
    add_test(NAME idf_partitions COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/idf.sh partitions
        ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR}/tmp/idf_partitions)
    set_tests_properties(idf_partitions PROPERTIES TIMEOUT 60 LABELS "device"
        ENVIRONMENT "FK_BIN=${PROJECT_BINARY_DIR}/bin")
endif()
add_test(NAME check_idf COMMAND sh ${PROJECT_SOURCE_DIR}/scripts/check-idf
    ${PROJECT_BINARY_DIR}/tmp/check_idf)
set_tests_properties(check_idf PROPERTIES TIMEOUT 600 SKIP_RETURN_CODE 77 LABELS "device")
