# The inventory's unit tests tamper with the database through raw SQLite calls.
if(TARGET fk_inventory)
    fk_unit_test(test_inventory SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_inventory.c
        LIBS fk_inventory PkgConfig::SQLITE3)
endif()
