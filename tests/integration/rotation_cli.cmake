# provision-keys rotate ota-key: interlocks and the full sequence on a minted fleet.
add_test(NAME rotation_cli COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/rotation_cli.sh
    ${PROJECT_BINARY_DIR}/bin ${PROJECT_SOURCE_DIR}/tests/vectors
    ${PROJECT_BINARY_DIR}/tmp/rotation_cli)
