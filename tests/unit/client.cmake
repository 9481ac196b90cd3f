# The OAuth2 client side (src/client): encrypted token store, refresh scheduler, single flight.
if(TARGET fk_client)
    fk_unit_test(test_client SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_client.c
        LIBS fk_client fk_oauth fk_common OpenSSL::Crypto)
    set_tests_properties(test_client PROPERTIES LABELS "oauth" TIMEOUT 120)
endif()
