# The shared CSV tokenizer (fleetkey/csv.h) in both dialects.
fk_fuzz(csv ${CMAKE_CURRENT_LIST_DIR}/fuzz_csv.c fk_common)
