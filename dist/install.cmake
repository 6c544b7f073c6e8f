# Runs at install time (see CMakeLists.txt): the paths follow the prefix
# cmake --install was given; DESTDIR is honoured.
function(hato_full var rel)
  if(IS_ABSOLUTE "${rel}")
    set(${var} "${rel}" PARENT_SCOPE)
  else()
    set(${var} "${CMAKE_INSTALL_PREFIX}/${rel}" PARENT_SCOPE)
  endif()
endfunction()

hato_full(HATO_SBINDIR "${HATO_SBINDIR_REL}")
# GNU convention: a /usr install is configured in /etc.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr" AND NOT IS_ABSOLUTE "${HATO_SYSCONFDIR_REL}")
  set(HATO_CONFDIR "/etc/hato")
else()
  hato_full(conf "${HATO_SYSCONFDIR_REL}")
  set(HATO_CONFDIR "${conf}/hato")
endif()
hato_full(unitdir "${HATO_UNITDIR}")

foreach(unit hato-intake hato-gateway)
  configure_file("${HATO_SRC}/${unit}.service.in" "${HATO_BIN}/${unit}.service" @ONLY)
  file(INSTALL "${HATO_BIN}/${unit}.service" DESTINATION "${unitdir}"
    FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
endforeach()

foreach(f conf/hato.ini routes/carriers.routes)
  get_filename_component(name "${f}" NAME)
  if(EXISTS "$ENV{DESTDIR}${HATO_CONFDIR}/${name}")
    message(STATUS "Keeping: $ENV{DESTDIR}${HATO_CONFDIR}/${name}")
  else()
    file(INSTALL "${HATO_TOP}/${f}" DESTINATION "${HATO_CONFDIR}"
      FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
  endif()
endforeach()
