# The OTA signing key as a class of the rotation plan: endorsement, trial manifest, commit,
# the old key retired after the interlock, ca,mtls,psk,ota in one plan, and old-key images
# refused afterwards (tests/integration/rot_robot_ota.sh).
if(TARGET fk_server)
    add_test(NAME rot_robot_ota COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/rot_robot_ota.sh
        ${PROJECT_BINARY_DIR}/bin ${PROJECT_BINARY_DIR}/tmp/rot_robot_ota)
    set_tests_properties(rot_robot_ota PROPERTIES TIMEOUT 600 LABELS "integration;rotation")
endif()
