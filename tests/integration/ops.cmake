# Operating the fleet (issue 17): /metrics checked by promtool and by value
# (tests/integration/ops_metrics.sh), the dashboard rendered by headless Chromium through
# fleetctl dashboard (tests/integration/ops_dashboard.sh).
if(TARGET fk_server AND TARGET fleetctl) # wss_client comes with server.cmake, included later
    foreach(t metrics dashboard)
        add_test(NAME ops_${t} COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/ops_${t}.sh
            ${PROJECT_BINARY_DIR}/bin ${PROJECT_BINARY_DIR}/tmp/ops_${t})
        set_tests_properties(ops_${t} PROPERTIES TIMEOUT 300 LABELS "ops;integration")
    endforeach()
endif()
