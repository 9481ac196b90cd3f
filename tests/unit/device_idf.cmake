# The ESP-IDF port's pure logic on the host (issue 18): partition roles against the library's
# own table reader, posture from the eFuse answers, the rollback decision.
if(TARGET fkd_idf_logic)
    fk_unit_test(test_device_idf SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_device_idf.c
        LIBS fkd_idf_logic fkd fk_nvs fk_common)
endif()
