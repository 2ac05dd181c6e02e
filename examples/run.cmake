# Runs an example for CTest and checks more than its exit code:
#   cmake -DEXE=<program> [-DARGS="--a --b"] [-DEXPECT=<text>] [-DJSON_OUT=<file>] -P run.cmake
# The program must exit 0; its output (stdout and stderr) must contain EXPECT;
# with JSON_OUT its stdout goes to that file, and `<program> --check-json=<file>`
# must accept it.
separate_arguments(args UNIX_COMMAND "${ARGS}")
if(JSON_OUT)
    execute_process(COMMAND ${EXE} ${args} RESULT_VARIABLE rc OUTPUT_FILE ${JSON_OUT}
                    ERROR_VARIABLE out)
else()
    execute_process(COMMAND ${EXE} ${args} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                    ERROR_VARIABLE out)
endif()
message("${out}")
if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${EXE} ${ARGS} exited with ${rc}")
endif()
if(EXPECT)
    string(FIND "${out}" "${EXPECT}" at)
    if(at EQUAL -1)
        message(FATAL_ERROR "the output does not contain \"${EXPECT}\"")
    endif()
endif()
if(JSON_OUT)
    execute_process(COMMAND ${EXE} --check-json=${JSON_OUT} RESULT_VARIABLE rc)
    if(NOT rc EQUAL 0)
        message(FATAL_ERROR "${JSON_OUT} is not a valid report")
    endif()
endif()
