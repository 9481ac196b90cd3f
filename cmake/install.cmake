# make install / make deb (docs/install.md): what goes where under CMAKE_INSTALL_PREFIX (default
# /usr/local; DESTDIR is honoured by `cmake --install`).
#   bin/                         the programs
#   share/man/man1/              one page per program, made at build time from its --help
#                                (scripts/mkman), so the manual cannot drift from the program
#   share/doc/fleetkey/          README.md and docs/*.md
#   lib/systemd/system/          fleetkey-server.service, ExecStart pointing into the prefix
# The host library's headers are not installed: the programs link the library statically and
# no library is installed, so the headers would describe nothing on the target system.
find_package(Python3 REQUIRED COMPONENTS Interpreter)

set(FK_PROGRAMS provision-keys fleetkey-server robot-sim fleetctl robot-sim-dl)
set(FK_SUMMARY_provision-keys "mint, store, sign and flash the secrets of a robot fleet")
set(FK_DESC_provision-keys "The factory and release engineer's tool: per-device keys, \
manifests and NVS images, the control-plane CA, PKCS#12 exports, firmware signing (Secure Boot \
V2), the virtual eFuse of a simulated robot, rotation plans, flashing over the ESP32 ROM \
protocol and the fleet inventory.")
set(FK_SUMMARY_fleetkey-server "the fleetkey control plane")
set(FK_DESC_fleetkey-server "The control plane and TLS staging server: mTLS secure WebSocket \
gateway for robots and phones, rotation orchestrator, OAuth2 token endpoint, admin JSON API and \
metrics. Installed with a hardened systemd unit, fleetkey-server.service.")
set(FK_SUMMARY_robot-sim "a simulated ESP32 robot running the fleetkey device library")
set(FK_DESC_robot-sim "Boots the device library from a flash image file as a robot boots from \
flash: NVS, credential store, production policy, the DTLS-PSK control listener, the wss client \
to the control plane, OTA updates, credential rotation, the Wi-Fi re-provisioning portal, the \
Secure Boot V2 check against its virtual eFuse, and the ESP32 ROM download mode.")
set(FK_SUMMARY_fleetctl "operator and client tool of the fleetkey control plane")
set(FK_DESC_fleetctl "Talks to fleetkey-server over mTLS with a PKCS#12 identity (devices, \
OTA pushes, rotation plans) and sends control commands to a robot over DTLS-PSK.")
set(FK_SUMMARY_robot-sim-dl "the ESP32 ROM download mode of robot-sim on a pseudo-terminal")
set(FK_DESC_robot-sim-dl "robot-sim's download mode as a program of its own: answers the ESP32 \
ROM serial protocol (SLIP, SYNC, FLASH_BEGIN/DATA/END, READ_FLASH, SPI_FLASH_MD5) on a pty, so \
provision-keys flash and esptool can write a flash image file.")
set(FK_SUBS_robot-sim --sub nvs --sub ota)
set(FK_SUBS_fleetctl --sub robot)
set(FK_SUBS_provision-keys --auto-subcommands)

set(FK_MAN_DIR ${PROJECT_BINARY_DIR}/man)
set(FK_MAN_PAGES "")
foreach(p ${FK_PROGRAMS})
    if(NOT TARGET ${p})
        continue()
    endif()
    set(see "")
    foreach(o ${FK_PROGRAMS})
        if(NOT o STREQUAL p AND TARGET ${o})
            list(APPEND see --see-also ${o})
        endif()
    endforeach()
    add_custom_command(OUTPUT ${FK_MAN_DIR}/${p}.1
        COMMAND ${CMAKE_COMMAND} -E make_directory ${FK_MAN_DIR}
        COMMAND ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/scripts/mkman --prog $<TARGET_FILE:${p}>
            --name ${p} --version ${PROJECT_VERSION} --summary "${FK_SUMMARY_${p}}"
            --description "${FK_DESC_${p}}" ${FK_SUBS_${p}} ${see} --out ${FK_MAN_DIR}/${p}.1
        DEPENDS ${p} ${PROJECT_SOURCE_DIR}/scripts/mkman
        COMMENT "man page ${p}.1 from ${p} --help" VERBATIM)
    list(APPEND FK_MAN_PAGES ${FK_MAN_DIR}/${p}.1)
    install(TARGETS ${p} RUNTIME DESTINATION bin)
endforeach()
add_custom_target(man ALL DEPENDS ${FK_MAN_PAGES})
install(FILES ${FK_MAN_PAGES} DESTINATION share/man/man1)

file(GLOB FK_DOCS CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/docs/*.md)
install(FILES ${PROJECT_SOURCE_DIR}/README.md ${FK_DOCS} DESTINATION share/doc/fleetkey)

# The unit names the binary by its installed path: rewritten at install time for the prefix
# actually used (cmake --install --prefix may differ from the configured one).
install(CODE "
    file(READ \"${PROJECT_SOURCE_DIR}/dist/fleetkey-server.service\" unit)
    string(REPLACE \"/usr/local/bin\" \"\${CMAKE_INSTALL_PREFIX}/bin\" unit \"\${unit}\")
    string(REPLACE \"/usr/share/doc/fleetkey\" \"\${CMAKE_INSTALL_PREFIX}/share/doc/fleetkey\" unit \"\${unit}\")
    file(MAKE_DIRECTORY \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/lib/systemd/system\")
    file(WRITE \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/lib/systemd/system/fleetkey-server.service\" \"\${unit}\")
    message(STATUS \"Installing: \$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/lib/systemd/system/fleetkey-server.service\")
")
