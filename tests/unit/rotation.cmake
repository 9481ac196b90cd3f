# OTA signing-key rotation planner on a small fleet in a real SQLite inventory.
fk_unit_test(test_rotation SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_rotation.c
    LIBS fk_rotation fk_inventory fk_ota fk_common)
