# Credential rotation over the control channel (device/src/store/rot_remote.c): every request
# kind and error code, the mtls trial's credentials, the listener sync, and a power cut at every
# flash write of a psk rotation driven through the handler.
fk_unit_test(test_rot_remote SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_rot_remote.c
    ${CMAKE_CURRENT_LIST_DIR}/rot_remote_fixture.c LIBS fkd_ctl)
# The class ota through the same handler, with real keys and signatures from the host library:
# endorsement, trial manifest, commit, and every refusal (tests/unit/test_rot_remote_ota.c).
fk_unit_test(test_rot_remote_ota SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_rot_remote_ota.c
    ${CMAKE_CURRENT_LIST_DIR}/rot_remote_fixture.c
    LIBS fkd_ctl fk_rotation fk_ota fk_common OpenSSL::Crypto)
