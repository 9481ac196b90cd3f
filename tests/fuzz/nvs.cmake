# nvs parsers under the fuzz driver: the image reader, the CSV loader (+ builder, read back by
# the reader) and the partition table (binary and CSV).
fk_fuzz(nvs_image ${CMAKE_CURRENT_LIST_DIR}/fuzz_nvs_image.c fk_nvs)
fk_fuzz(nvs_csv ${CMAKE_CURRENT_LIST_DIR}/fuzz_nvs_csv.c fk_nvs)
fk_fuzz(partition ${CMAKE_CURRENT_LIST_DIR}/fuzz_partition.c fk_nvs)
