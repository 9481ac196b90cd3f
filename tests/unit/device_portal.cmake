# Wi-Fi re-provisioning portal (device/src/portal/portal.c): HTTP parser, form, 802.11 rules,
# handler, and the power-cut sweep of the journaled NVS write.
fk_unit_test(test_device_portal SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_device_portal.c
    LIBS fkd)
