# Device parsers under the fuzz driver (corpora in tests/fuzz/corpus/<name>/).
fk_fuzz(sdkconfig ${CMAKE_CURRENT_LIST_DIR}/fuzz_sdkconfig.c fkd)
fk_fuzz(device_nvs ${CMAKE_CURRENT_LIST_DIR}/fuzz_device_nvs.c fkd)
# the rotation records read at boot (fkd_rot_load)
fk_fuzz(rot_record ${CMAKE_CURRENT_LIST_DIR}/fuzz_rot_record.c fkd)
