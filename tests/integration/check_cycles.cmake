# The import-cycle check (scripts/check-cycles, also run by `make check` on the build tree):
# the tree has none, and planted two-way object files and libraries are reported.
add_test(NAME check_cycles COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/check_cycles.sh
    ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR} ${PROJECT_BINARY_DIR}/tmp/check_cycles)
