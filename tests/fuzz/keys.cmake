# keys parsers under the fuzz driver: the manifest (with a render/parse round trip) and the
# NVS read-back used to check images against manifests.
if(TARGET fk_keys)
    fk_fuzz(manifest ${CMAKE_CURRENT_LIST_DIR}/fuzz_manifest.c fk_keys)
    fk_fuzz(keys_nvs ${CMAKE_CURRENT_LIST_DIR}/fuzz_keys_nvs.c fk_keys)
endif()
