# Credential rotation over the control channel (device/src/store/rot_remote.c): every request
# kind and error code, the mtls trial's credentials, the listener sync, and a power cut at every
# flash write of a psk rotation driven through the handler.
fk_unit_test(test_rot_remote SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_rot_remote.c LIBS fkd_ctl)
