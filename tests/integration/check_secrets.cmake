# The no-secret-in-any-log check (scripts/check-secrets-in-logs, run by scripts/run-ctest over
# the whole suite's output after every CTest run): planted leaks must be found, clean logs pass.
add_test(NAME check_secrets_in_logs COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/check_secrets.sh
    ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR}/tmp/check_secrets_in_logs)
