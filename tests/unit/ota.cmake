# ota: Secure Boot V2 sign/verify against espsecure's vectors, app image parser against
# tests/tools/mkappimage (also built as a program for other tests and for people).
add_library(fk_test_mkappimage STATIC ${PROJECT_SOURCE_DIR}/tests/tools/mkappimage.c)
target_include_directories(fk_test_mkappimage PUBLIC ${PROJECT_SOURCE_DIR}/tests/tools)
target_link_libraries(fk_test_mkappimage PRIVATE OpenSSL::Crypto fk_flags)

add_executable(mkappimage ${PROJECT_SOURCE_DIR}/tests/tools/mkappimage.c)
target_compile_definitions(mkappimage PRIVATE MKAPPIMAGE_MAIN)
target_link_libraries(mkappimage PRIVATE OpenSSL::Crypto fk_flags)

fk_unit_test(test_ota SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_ota.c
    LIBS fk_ota fk_test_mkappimage OpenSSL::Crypto)
