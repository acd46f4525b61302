# Finds every external dependency through pkg-config and, when one is missing,
# stops with the Debian package that provides it, so a new machine's owner
# knows exactly what to apt-get install (scripts/setup.sh installs them all).
find_package(PkgConfig)
if(NOT PKG_CONFIG_FOUND)
  message(FATAL_ERROR "pkg-config not found: install the Debian package 'pkg-config' "
                      "(or run ./scripts/setup.sh)")
endif()

# flc_require(<imported target> <pkg-config module> <Debian package>)
function(flc_require target module debpkg)
  pkg_check_modules(${target} QUIET IMPORTED_TARGET GLOBAL ${module})
  if(NOT ${target}_FOUND)
    message(FATAL_ERROR "${module} not found: install the Debian package '${debpkg}' "
                        "(or run ./scripts/setup.sh)")
  endif()
  message(STATUS "flcache: ${module} ${${target}_VERSION}")
endfunction()

flc_require(HIREDIS   hiredis        libhiredis-dev)
flc_require(CURL      libcurl        libcurl4-openssl-dev)
flc_require(CJSON     libcjson       libcjson-dev)
flc_require(OPENBLAS  openblas       libopenblas-dev)
flc_require(LIBUV     libuv          libuv1-dev)
flc_require(PROTOBUFC libprotobuf-c  libprotobuf-c-dev)
flc_require(ZLIB      zlib           zlib1g-dev)
flc_require(PNG       libpng         libpng-dev)

find_program(PROTOC_C NAMES protoc-c protoc-gen-c)
if(NOT PROTOC_C)
  message(FATAL_ERROR "protoc-c not found: install the Debian package 'protobuf-c-compiler' "
                      "(or run ./scripts/setup.sh)")
endif()

# redis-server is a run-time dependency (embedded default and the test fixture);
# its path is baked in as the default and can be overridden by FLCACHE_REDIS_SERVER.
find_program(REDIS_SERVER redis-server PATHS /usr/bin /usr/sbin)
if(NOT REDIS_SERVER)
  message(FATAL_ERROR "redis-server not found: install the Debian package 'redis-server' "
                      "(or run ./scripts/setup.sh)")
endif()
find_package(Threads REQUIRED)

# flc_layer(<name> [DEPS targets...]): a static library of every *.c file in
# the calling folder. Layers link only to the layers below them.
function(flc_layer name)
  cmake_parse_arguments(L "" "" "DEPS" ${ARGN})
  file(GLOB srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.c)
  if(srcs)
    add_library(${name} STATIC ${srcs})
    target_link_libraries(${name} PUBLIC ${L_DEPS})
  else()
    add_library(${name} INTERFACE)
    target_link_libraries(${name} INTERFACE ${L_DEPS})
  endif()
endfunction()
