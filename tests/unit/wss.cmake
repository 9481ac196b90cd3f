# The device wss client's pure parts (issue 6, section 3): URI, RFC 6125 host matching, the
# RFC 6455 handshake helpers, framing in both roles, UTF-8, the JSON messages, backoff.
if(TARGET fkd_wss)
    fk_unit_test(test_wss SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_wss.c LIBS fkd_wss)
endif()
