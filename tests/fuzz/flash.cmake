# Fuzz targets of the flash module: the SLIP decoder and the ROM responder's command parser.
fk_fuzz(slip ${CMAKE_CURRENT_LIST_DIR}/fuzz_slip.c fkd_rom)
fk_fuzz(rom_cmd ${CMAKE_CURRENT_LIST_DIR}/fuzz_rom_cmd.c fk_flash fkd_rom)
