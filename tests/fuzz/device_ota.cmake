# Device OTA parsers under the fuzz driver: otadata + app image + boot selection, and the
# Secure Boot V2 signature sector verifier (corpora in tests/fuzz/corpus/<name>/).
fk_fuzz(otadata ${CMAKE_CURRENT_LIST_DIR}/fuzz_otadata.c fkd fk_nvs fk_common)
fk_fuzz(dev_sig_sector ${CMAKE_CURRENT_LIST_DIR}/fuzz_dev_sig_sector.c fkd)
