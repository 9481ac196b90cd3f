# The incident plan's state file parser under the fuzz driver (with a render/parse round trip).
if(TARGET fk_rotation)
    fk_fuzz(incident_state ${CMAKE_CURRENT_LIST_DIR}/fuzz_incident_state.c fk_rotation)
endif()
