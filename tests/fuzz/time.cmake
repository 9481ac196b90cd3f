# The inventory timestamp reader (fk_time_parse_rfc3339; corpus: tests/fuzz/corpus/time/).
fk_fuzz(time ${CMAKE_CURRENT_LIST_DIR}/fuzz_time.c fk_common)
