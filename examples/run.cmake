# Runs an example for CTest and checks more than its exit code:
#   cmake -DEXE=<program> [-DARGS="--a --b"] [-DEXIT=<code>|nonzero] [-DEXPECT=<text>]
#         [-DEXPECT_OUT=<text>] [-DEXPECT_ERR=<text>] [-DJSON_OUT=<file>] -P run.cmake
# The program must exit with EXIT (default 0; "nonzero": any other code). Its
# output must contain EXPECT (stdout and stderr together), its stdout
# EXPECT_OUT and its stderr EXPECT_ERR. With JSON_OUT its stdout goes to that
# file, and `<program> --check-json=<file>` must accept it. A sanitizer's
# report in the output fails the run.
cmake_minimum_required(VERSION 3.16)
separate_arguments(args UNIX_COMMAND "${ARGS}")
if(NOT DEFINED EXIT)
    set(EXIT 0)
endif()
if(JSON_OUT)
    execute_process(COMMAND ${EXE} ${args} RESULT_VARIABLE rc OUTPUT_FILE ${JSON_OUT}
                    ERROR_VARIABLE err)
    set(out "")
else()
    execute_process(COMMAND ${EXE} ${args} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                    ERROR_VARIABLE err)
endif()
message("${out}${err}")
if(EXIT STREQUAL "nonzero")
    if(rc EQUAL 0 OR NOT rc MATCHES "^[0-9]+$")
        message(FATAL_ERROR "${EXE} ${ARGS} exited with ${rc}, expected a non-zero exit code")
    endif()
elseif(NOT rc EQUAL EXIT)
    message(FATAL_ERROR "${EXE} ${ARGS} exited with ${rc}, expected ${EXIT}")
endif()
# A sanitizer report fails the run whatever the exit code (ASan's is 1, which a
# test that expects a failure would otherwise accept).
if("${out}${err}" MATCHES "(ERROR|WARNING): [A-Za-z]+Sanitizer|runtime error:")
    message(FATAL_ERROR "${EXE} ${ARGS}: a sanitizer reported an error")
endif()
set(text_EXPECT "${out}${err}")
set(text_EXPECT_OUT "${out}")
set(text_EXPECT_ERR "${err}")
foreach(check EXPECT EXPECT_OUT EXPECT_ERR)
    if(DEFINED ${check})
        string(FIND "${text_${check}}" "${${check}}" at)
        if(at EQUAL -1)
            message(FATAL_ERROR "${check}: the output does not contain \"${${check}}\"")
        endif()
    endif()
endforeach()
if(JSON_OUT)
    execute_process(COMMAND ${EXE} --check-json=${JSON_OUT} RESULT_VARIABLE rc)
    if(NOT rc EQUAL 0)
        message(FATAL_ERROR "${JSON_OUT} is not a valid report")
    endif()
endif()
