# fleetkey-server end to end on 127.0.0.1: real TLS, real sockets, certificates from
# provision-keys ca, an independent WebSocket client (tests/tools/wss_client.c), the openssl
# command line and fleetctl.
if(TARGET fk_server AND TARGET fk_pki)
    add_executable(wss_client ${CMAKE_CURRENT_LIST_DIR}/../tools/wss_client.c)
    target_link_libraries(wss_client PRIVATE OpenSSL::SSL OpenSSL::Crypto fk_flags)
    # The load generator of bench/bench_server.sh (built here: bench/ builds bench_*.c only).
    add_executable(server_load ${PROJECT_SOURCE_DIR}/bench/server_load.c)
    target_link_libraries(server_load PRIVATE OpenSSL::SSL OpenSSL::Crypto fk_flags)
    # Its fleet-scale sibling: one device identity per connection, taken from batch's images.
    add_executable(fleet_load ${PROJECT_SOURCE_DIR}/bench/fleet_load.c)
    target_link_libraries(fleet_load PRIVATE fk_nvs fk_common OpenSSL::SSL OpenSSL::Crypto
        fk_flags)
    # OpenSSL's own floor per connection (heap, handshake CPU), printed by bench_server.sh.
    add_executable(tls_floor ${PROJECT_SOURCE_DIR}/bench/tls_floor.c)
    target_link_libraries(tls_floor PRIVATE OpenSSL::SSL OpenSSL::Crypto fk_flags)
    add_test(NAME server_tls_floor
        COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/tls_floor.sh ${PROJECT_BINARY_DIR}/bin
            ${PROJECT_BINARY_DIR}/tmp/server_tls_floor)
    set_tests_properties(server_tls_floor PROPERTIES TIMEOUT 120 LABELS "server;integration")
    add_test(NAME server_fleet_load
        COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/fleet_load.sh ${PROJECT_BINARY_DIR}/bin
            ${PROJECT_BINARY_DIR}/tmp/server_fleet_load)
    set_tests_properties(server_fleet_load PROPERTIES TIMEOUT 300 LABELS "server;integration")
    foreach(c hello refusals revoke openssl protocol admin fleetctl)
        add_test(NAME server_${c}
            COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/server.sh ${c} ${PROJECT_BINARY_DIR}/bin
                ${PROJECT_BINARY_DIR}/tmp/server_${c})
        set_tests_properties(server_${c} PROPERTIES TIMEOUT 180 LABELS "server;integration")
    endforeach()
endif()
