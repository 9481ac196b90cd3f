# What `fleetctl dashboard` accepts from a browser and forwards (tools/fleetctl/dash_req.c).
if(TARGET fleetctl_dash_req)
    fk_unit_test(test_fleetctl_dash SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_fleetctl_dash.c
        LIBS fleetctl_dash_req)
    target_include_directories(test_fleetctl_dash PRIVATE ${PROJECT_SOURCE_DIR}/tools/fleetctl)
endif()
