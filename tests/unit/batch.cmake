fk_unit_test(test_batch SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_batch.c LIBS fk_batch fk_keys)
