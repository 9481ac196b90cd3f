# generate/batch --ca (issue 6, section 1): batch with mTLS identities into encrypted images,
# certificates verified with openssl, a production robot-sim dialling fleetkey-server with them.
if(TARGET robot-sim AND TARGET provision-keys AND TARGET fleetkey-server)
    add_test(NAME mtls_provision
        COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/mtls_provision.sh ${PROJECT_BINARY_DIR}/bin
            ${PROJECT_BINARY_DIR}/tmp/mtls_provision)
    set_tests_properties(mtls_provision PROPERTIES TIMEOUT 120 LABELS "mtls;integration")
endif()
