# Device credential rotation (device/src/store/rot.c): two slots, the state machine, power-cut
# sweeps.
fk_unit_test(test_device_rot SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_device_rot.c LIBS fkd)
