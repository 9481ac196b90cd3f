# The pki module's CSR parsing path and escapers (corpus: tests/fuzz/corpus/csr/).
if(TARGET fk_pki)
    fk_fuzz(csr ${CMAKE_CURRENT_LIST_DIR}/fuzz_csr.c fk_pki)
    set_tests_properties(fuzz_csr PROPERTIES LABELS "pki;fuzz")
endif()
# The CA index as read back (corpus: tests/fuzz/corpus/pki_index/); its scratch CA under tmp/.
if(TARGET fk_pki)
    fk_fuzz(pki_index ${CMAKE_CURRENT_LIST_DIR}/fuzz_pki_index.c fk_pki)
    set_tests_properties(fuzz_pki_index PROPERTIES LABELS "pki;fuzz"
        ENVIRONMENT "FK_TMP=${PROJECT_BINARY_DIR}/tmp/fuzz_pki_index")
endif()
