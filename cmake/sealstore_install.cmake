include(CMakePackageConfigHelpers)

set(SEALSTORE_INSTALL_TARGETS sealstore)
if(SEALSTORE_HAVE_CLUSTER)
  list(APPEND SEALSTORE_INSTALL_TARGETS sealstore_cluster)
endif()
install(TARGETS ${SEALSTORE_INSTALL_TARGETS} EXPORT sealstoreTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY include/sealstore DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT sealstoreTargets NAMESPACE sealstore::
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/sealstore)

configure_package_config_file(cmake/sealstoreConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/sealstoreConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/sealstore)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/sealstoreConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/sealstoreConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/sealstoreConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/sealstore)

configure_file(cmake/sealstore.pc.in ${CMAKE_CURRENT_BINARY_DIR}/sealstore.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/sealstore.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
