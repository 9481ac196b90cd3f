# The incident plan's state file (fleetkey/incident.h, fleetctl incident).
if(TARGET fk_rotation)
    fk_unit_test(test_incident SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_incident.c LIBS fk_rotation)
endif()
