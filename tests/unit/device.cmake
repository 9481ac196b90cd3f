# Device library (device/): NVS runtime, flash model, partition table, config, store, policy.
fk_unit_test(test_device_nvs SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_device_nvs.c
    LIBS fkd fk_common)
