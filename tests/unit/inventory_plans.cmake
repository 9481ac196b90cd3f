# Rotation plans stored in the inventory (issue 15): the fk_inventory_plan_* calls and the
# per-device merge (fk_plan_copy_target) several server instances make through them.
# Also the server's reader of such a row (fk_rot_job_check).
if(TARGET fk_inventory AND TARGET fk_server)
    fk_unit_test(test_inventory_plans SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_inventory_plans.c
        LIBS fk_server fk_inventory fk_plan fk_common)
endif()
