# The signing-key backup: GF(256), Shamir split/combine, the share file, backup/restore.
if(TARGET fk_keys)
    fk_unit_test(test_keybackup SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_keybackup.c
        LIBS fk_keys OpenSSL::Crypto)
endif()
