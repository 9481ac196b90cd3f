fk_unit_test(test_csv SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_csv.c LIBS fk_common)
