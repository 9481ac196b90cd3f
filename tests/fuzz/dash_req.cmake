# The request-head parser of fleetctl dashboard (corpus: tests/fuzz/corpus/dash_req/).
if(TARGET fleetctl_dash_req)
    fk_fuzz(dash_req ${CMAKE_CURRENT_LIST_DIR}/fuzz_dash_req.c fleetctl_dash_req)
    target_include_directories(fuzz_dash_req PRIVATE ${PROJECT_SOURCE_DIR}/tools/fleetctl)
endif()
