# Device library (device/): NVS runtime, flash model, partition table, config, store, policy.
fk_unit_test(test_device_nvs SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_device_nvs.c
    LIBS fkd fk_nvs fk_common)
fk_unit_test(test_device_config SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_device_config.c
    LIBS fkd)
fk_unit_test(test_device_policy SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_device_policy.c
    LIBS fkd)
# The same tests against store.c compiled as an ESP-IDF production firmware would compile it
# (sdkconfig.h: CONFIG_PRODUCTION_BUILD 1): the Kconfig Wi-Fi fallback is not in the binary.
fk_unit_test(test_device_policy_prodfw SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_device_policy.c
    ${PROJECT_SOURCE_DIR}/device/src/store/store.c LIBS fkd)
target_compile_definitions(test_device_policy_prodfw PRIVATE CONFIG_PRODUCTION_BUILD=1
    FKD_TEST_PROD_FIRMWARE=1)
fk_unit_test(test_device_part SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_device_part.c
    LIBS fkd fk_nvs)
