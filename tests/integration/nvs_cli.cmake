# provision-keys nvs end to end on the generator's vectors: every case of cases.tsv by SHA-256,
# exit codes, masked dumps, and no output file left behind by a failed run.
add_test(NAME nvs_cli COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/nvs_cli.sh
    ${PROJECT_BINARY_DIR}/bin ${PROJECT_SOURCE_DIR}/tests/vectors/nvs
    ${PROJECT_BINARY_DIR}/tmp/nvs_cli)
set_tests_properties(nvs_cli PROPERTIES TIMEOUT 300 LABELS "nvs;integration")
