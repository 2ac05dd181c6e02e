# Compiler flags for our own code (never for dependencies), sanitizers, and
# the brg_add_test() helper.
set(BRG_WARNINGS -Wall -Wextra -Werror -Wstrict-prototypes -Wshadow -Wno-unused-parameter)

set(BRG_SAN_FLAGS "")
if(BRG_SANITIZER STREQUAL "address,undefined")
    set(BRG_SAN_FLAGS -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all)
elseif(BRG_SANITIZER STREQUAL "thread")
    set(BRG_SAN_FLAGS -fsanitize=thread -fno-omit-frame-pointer)
elseif(NOT BRG_SANITIZER STREQUAL "none")
    message(FATAL_ERROR "BRG_SANITIZER must be none, address,undefined or thread")
endif()
if(BRG_SAN_FLAGS)
    add_compile_options(${BRG_SAN_FLAGS})
    add_link_options(${BRG_SAN_FLAGS})
endif()

# Apply our warnings and defines to a target of ours.
function(brg_target_defaults target)
    target_compile_options(${target} PRIVATE ${BRG_WARNINGS})
    target_compile_definitions(${target} PRIVATE _GNU_SOURCE)
    if(BRG_DEBUG_YIELD)
        target_compile_definitions(${target} PRIVATE BRG_DEBUG_YIELD=1)
    endif()
endfunction()

# brg_add_test(<folder> <module> [LIBS ...]): builds tests/<folder>/test_<module>.c
# into test_<module> and registers it in CTest as "<folder>.<module>".
function(brg_add_test folder module)
    cmake_parse_arguments(T "" "" "LIBS" ${ARGN})
    set(exe test_${module})
    add_executable(${exe} ${PROJECT_SOURCE_DIR}/tests/${folder}/test_${module}.c)
    brg_target_defaults(${exe})
    target_include_directories(${exe} PRIVATE ${PROJECT_SOURCE_DIR}/tests ${PROJECT_SOURCE_DIR})
    target_link_libraries(${exe} PRIVATE ${T_LIBS} PkgConfig::CHECK Threads::Threads)
    add_test(NAME ${folder}.${module} COMMAND ${exe})
    # Nodes of the tests share a key directory in the build tree (CURVE on
    # tcp://, docs/PROTOCOL.md section 22), never the user's own.
    set_tests_properties(${folder}.${module} PROPERTIES TIMEOUT 900
        ENVIRONMENT "BRG_KEY_DIR=${PROJECT_BINARY_DIR}/test-keys")
endfunction()
