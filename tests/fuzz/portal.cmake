# The Wi-Fi re-provisioning portal's HTTP request parser, form decoder and journal parser
# (device/src/portal/portal.c), corpus in tests/fuzz/corpus/portal_http/.
fk_fuzz(portal_http ${CMAKE_CURRENT_LIST_DIR}/fuzz_portal_http.c fkd)
