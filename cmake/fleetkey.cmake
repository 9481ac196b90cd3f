# Helpers shared by every CMakeLists.txt of the project.

# fk_unit_test(NAME SOURCES... LIBS ...): a cmocka test program registered with CTest.
# Tests find the project's vectors through FK_VECTORS and a scratch directory through FK_TMP.
function(fk_unit_test name)
    cmake_parse_arguments(T "" "" "SOURCES;LIBS" ${ARGN})
    add_executable(${name} ${T_SOURCES})
    target_link_libraries(${name} PRIVATE ${T_LIBS} PkgConfig::CMOCKA fk_flags)
    add_test(NAME ${name} COMMAND ${name})
    set_tests_properties(${name} PROPERTIES ENVIRONMENT
        "FK_VECTORS=${PROJECT_SOURCE_DIR}/tests/vectors;FK_TMP=${PROJECT_BINARY_DIR}/tmp/${name};FK_BIN=${PROJECT_BINARY_DIR}/bin")
endfunction()

# fk_fuzz(NAME SOURCE LIBS...): a fuzz target. Without libFuzzer it links our standalone
# driver, and CTest runs it over tests/fuzz/corpus/NAME (every file must be handled without a
# crash, leak or sanitizer report).
# With FK_FUZZ (clang, `make fuzz`) the same source links libFuzzer instead, for coverage-guided
# runs that grow the corpus; CTest still replays the corpus with it.
function(fk_fuzz name src)
    if(FK_FUZZ)
        add_executable(fuzz_${name} ${src})
        target_link_options(fuzz_${name} PRIVATE -fsanitize=fuzzer)
    else()
        add_executable(fuzz_${name} ${src} ${PROJECT_SOURCE_DIR}/tests/fuzz/driver.c)
    endif()
    target_link_libraries(fuzz_${name} PRIVATE ${ARGN} fk_flags)
    add_test(NAME fuzz_${name} COMMAND fuzz_${name} ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/${name})
endfunction()

# Programs land in build/bin so tests and scripts can find them in one place.
set(CMAKE_RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/bin)
