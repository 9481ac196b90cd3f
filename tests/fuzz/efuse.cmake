# The virtual eFuse file and burn logic (device/src/boot/efuse.c), corpus in
# tests/fuzz/corpus/efuse/.
fk_fuzz(efuse ${CMAKE_CURRENT_LIST_DIR}/fuzz_efuse.c fkd)
