# The device's credential-rotation request handler (device/src/store/rot_remote.c) behind the
# wss message parser; CTest replays tests/fuzz/corpus/rot_remote/ (one message a line).
fk_fuzz(rot_remote ${CMAKE_CURRENT_LIST_DIR}/fuzz_rot_remote.c fkd_ctl)
