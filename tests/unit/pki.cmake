if(TARGET fk_pki)
    fk_unit_test(test_pki SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_pki.c
        LIBS fk_pki OpenSSL::Crypto)
endif()
