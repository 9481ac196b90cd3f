# Presence rows (inventory schema 2), written for fleetkey-server.
if(TARGET fk_inventory)
    fk_unit_test(test_inventory_presence SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_inventory_presence.c
        LIBS fk_inventory fk_common)
endif()
