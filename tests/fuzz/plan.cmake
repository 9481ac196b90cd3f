# The reader of saved rotation plans (corpus: tests/fuzz/corpus/plan/).
if(TARGET fk_plan)
    fk_fuzz(plan ${CMAKE_CURRENT_LIST_DIR}/fuzz_plan.c fk_plan fk_common)
    set_tests_properties(fuzz_plan PROPERTIES LABELS "plan;fuzz")
endif()
