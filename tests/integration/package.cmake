# make install / make deb (docs/install.md): a DESTDIR install and a .deb built by
# scripts/mkdeb, each program's --help from the installed tree, man pages rendered clean.
add_test(NAME package COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/package.sh ${PROJECT_SOURCE_DIR}
    ${PROJECT_BINARY_DIR} ${PROJECT_BINARY_DIR}/tmp/package)
set_tests_properties(package PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300)
