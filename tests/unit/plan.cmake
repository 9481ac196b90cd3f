# Rotation plans (src/plan): waves, threshold, dependency order, interlock, saved JSON.
fk_unit_test(test_plan SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_plan.c LIBS fk_plan fk_common)
