# ota parsers under the fuzz driver: the app image and the signature sector (with verify).
fk_fuzz(app_image ${CMAKE_CURRENT_LIST_DIR}/fuzz_app_image.c fk_ota)
fk_fuzz(sig_sector ${CMAKE_CURRENT_LIST_DIR}/fuzz_sig_sector.c fk_ota)
