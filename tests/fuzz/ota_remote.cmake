# The device's OTA request handler over the control channel (device/src/ota/ota_remote.c) behind
# the wss message parser; CTest replays tests/fuzz/corpus/ota_remote/ (one message a line).
fk_fuzz(ota_remote ${CMAKE_CURRENT_LIST_DIR}/fuzz_ota_remote.c fkd fk_nvs fk_common)
