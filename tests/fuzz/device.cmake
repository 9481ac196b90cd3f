# Device parsers under the fuzz driver (corpora in tests/fuzz/corpus/<name>/).
fk_fuzz(sdkconfig ${CMAKE_CURRENT_LIST_DIR}/fuzz_sdkconfig.c fkd)
fk_fuzz(device_nvs ${CMAKE_CURRENT_LIST_DIR}/fuzz_device_nvs.c fkd)
