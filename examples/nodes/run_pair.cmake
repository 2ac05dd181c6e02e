# Runs pong_node --once and ping_node against it, at the same time, for CTest:
#   cmake -DPONG=<pong_node> -DPING=<ping_node> -DEP=<endpoint> -P run_pair.cmake
# An execute_process pipeline runs both at once, pong_node's stdout into
# ping_node's stdin, and ping_node --connect - reads pong_node's endpoint
# from it (so a tcp port 0 works). Both must exit 0 and ping_node must
# report its round trips.
cmake_minimum_required(VERSION 3.16)
execute_process(COMMAND ${PONG} --listen ${EP} --once
                COMMAND ${PING} --connect - --rounds 500
                RESULTS_VARIABLE rcs OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 60)
message("${out}${err}")
if(NOT rcs STREQUAL "0;0")
    message(FATAL_ERROR "pong_node;ping_node exited with ${rcs}")
endif()
if("${out}${err}" MATCHES "(ERROR|WARNING): [A-Za-z]+Sanitizer|runtime error:")
    message(FATAL_ERROR "a sanitizer reported an error")
endif()
string(FIND "${out}" "ping_node: 500 round trips done" at)
if(at EQUAL -1)
    message(FATAL_ERROR "ping_node did not report its round trips")
endif()
