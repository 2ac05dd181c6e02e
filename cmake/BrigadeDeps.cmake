# Finds the required Debian packages through pkg-config and fails at configure
# time with the name of the package to install.
find_package(PkgConfig)
if(NOT PKG_CONFIG_FOUND)
    message(FATAL_ERROR "pkg-config not found: apt-get install -y pkg-config")
endif()
set(THREADS_PREFER_PTHREAD_FLAG ON)
find_package(Threads REQUIRED)

function(brg_require_pkg var module debian_pkg)
    pkg_check_modules(${var} IMPORTED_TARGET ${module})
    if(NOT ${var}_FOUND)
        message(FATAL_ERROR "Brigade needs ${module}: apt-get install -y ${debian_pkg}")
    endif()
endfunction()

brg_require_pkg(MSGPACK msgpack libmsgpack-dev)
brg_require_pkg(UUID uuid uuid-dev)
brg_require_pkg(ZMQ libzmq libzmq3-dev)
# The agent layer of actors/: the HTTP client actor (libcurl) and the model
# backends, which build and parse JSON with jansson (never by hand).
brg_require_pkg(CURL "libcurl>=7.85" libcurl4-openssl-dev) # CURLOPT_PROTOCOLS_STR
brg_require_pkg(JANSSON jansson libjansson-dev)
if(BRG_BUILD_TESTS)
    brg_require_pkg(CHECK check check)
endif()
