# provision-keys ca / export-p12 / kconfig / env end to end, checked by the openssl command
# line and Java's keytool (both independent of our code). keytool is required, not optional:
# scripts/install-deps installs it (scripts/packages.d/pki.txt), so a missing one fails.
if(TARGET fk_pki)
    foreach(c verify csr p12 kconfig negative inventory)
        add_test(NAME pki_cli_${c}
            COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/pki_cli.sh ${c} ${PROJECT_BINARY_DIR}/bin
                ${PROJECT_BINARY_DIR}/tmp/pki_cli_${c})
        set_tests_properties(pki_cli_${c} PROPERTIES TIMEOUT 180 LABELS "pki;integration")
    endforeach()
endif()
