# The key-backup share file parser under the fuzz driver (with a format/parse round trip).
if(TARGET fk_keys)
    fk_fuzz(keyshare ${CMAKE_CURRENT_LIST_DIR}/fuzz_keyshare.c fk_keys)
endif()
