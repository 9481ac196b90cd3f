# fkd_idf_logic: device/port/esp-idf/idf_logic.c, the part of the ESP-IDF port that includes
# no ESP-IDF header (fkd_idf_logic.h). port_idf.c and net_idf.c are compiled only by ESP-IDF
# itself (port/esp-idf/component.cmake) and by `make check-idf` against a real ESP-IDF tree.
add_library(fkd_idf_logic STATIC ${CMAKE_CURRENT_LIST_DIR}/port/esp-idf/idf_logic.c)
target_include_directories(fkd_idf_logic PUBLIC ${CMAKE_CURRENT_LIST_DIR}/port/esp-idf)
target_link_libraries(fkd_idf_logic PUBLIC fkd PRIVATE fk_flags)
