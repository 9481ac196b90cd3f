# The inventory location's password mask (fk_inventory_location_display, issue 15).
if(TARGET fk_inventory)
    fk_fuzz(inv_location ${CMAKE_CURRENT_LIST_DIR}/fuzz_inv_location.c fk_inventory)
endif()
