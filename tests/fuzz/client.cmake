# The token store reader and the token answer parser of the C client (corpus: corpus/token_store/).
if(TARGET fk_client)
    fk_fuzz(token_store ${CMAKE_CURRENT_LIST_DIR}/fuzz_token_store.c fk_client fk_oauth fk_common)
    set_tests_properties(fuzz_token_store PROPERTIES LABELS "oauth;fuzz")
endif()
