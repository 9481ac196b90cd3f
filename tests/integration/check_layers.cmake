# The layering check (scripts/check-layers, also run by `make check` on the tree itself):
# a temp copy with planted violations must fail with each offending include's file and line.
add_test(NAME check_layers COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/check_layers.sh
    ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR}/tmp/check_layers)
