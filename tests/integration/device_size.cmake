# device/src must build freestanding for the ESP32-C3 core (rv32imc, picolibc): the same
# script as `make device-size`, run as a test wherever the cross compiler is installed
# (scripts/packages.d/device-size.txt), so an OS header slipping into the core fails CI.
find_program(FK_RISCV_CC riscv64-unknown-elf-gcc)
if(FK_RISCV_CC AND EXISTS /usr/lib/picolibc/riscv64-unknown-elf/picolibc.specs)
    add_test(NAME device_size_freestanding
        COMMAND sh ${PROJECT_SOURCE_DIR}/scripts/device-size
            ${PROJECT_BINARY_DIR}/tmp/device_size_freestanding)
    set_tests_properties(device_size_freestanding PROPERTIES TIMEOUT 300 LABELS "device")
endif()
