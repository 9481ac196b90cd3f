fk_unit_test(test_flash SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_flash.c
    LIBS fk_flash fkd_rom Threads::Threads)
# zlib (compress2, used to make test streams) comes through fk_flash.
