# The pki module's CSR parsing path and escapers (corpus: tests/fuzz/corpus/csr/).
if(TARGET fk_pki)
    fk_fuzz(csr ${CMAKE_CURRENT_LIST_DIR}/fuzz_csr.c fk_pki)
    set_tests_properties(fuzz_csr PROPERTIES LABELS "pki;fuzz")
endif()
