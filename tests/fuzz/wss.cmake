# Fuzz targets of the device wss client (issue 6, section 5): the WebSocket frame decoder and
# the JSON message parser; CTest replays tests/fuzz/corpus/ws_frame and corpus/wss_json.
if(TARGET fkd_wss)
    fk_fuzz(ws_frame ${CMAKE_CURRENT_LIST_DIR}/fuzz_ws_frame.c fkd_wss)
    fk_fuzz(wss_json ${CMAKE_CURRENT_LIST_DIR}/fuzz_wss_json.c fkd_wss)
endif()
