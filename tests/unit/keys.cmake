# The keys module's unit tests; they read the NVS golden vectors through FK_VECTORS.
if(TARGET fk_keys)
    fk_unit_test(test_keys SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_keys.c
        LIBS fk_keys fk_pki OpenSSL::Crypto)
endif()
