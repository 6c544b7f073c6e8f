# One fuzz target under ctest (see CMakeLists.txt): each file of REGRESS
# once, then SECONDS of fuzzing on a fresh copy of CORPUS in WORK. New
# inputs go to the copy; a crash leaves its input in WORK/artifacts.
foreach(v FUZZER CORPUS REGRESS DICT WORK SECONDS)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "run.cmake: ${v} is not set")
  endif()
endforeach()

set(opts -rss_limit_mb=2048 -timeout=10 -artifact_prefix=${WORK}/artifacts/)
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK}/corpus ${WORK}/artifacts)

file(GLOB regress LIST_DIRECTORIES false ${REGRESS}/*)
if(regress)
  list(SORT regress)
  execute_process(COMMAND ${FUZZER} ${opts} ${regress} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${FUZZER}: a regression input in ${REGRESS} fails (${rc})")
  endif()
endif()

file(GLOB seeds LIST_DIRECTORIES false ${CORPUS}/*)
if(seeds)
  file(COPY ${seeds} DESTINATION ${WORK}/corpus)
endif()
set(dict)
if(EXISTS ${DICT})
  set(dict -dict=${DICT})
endif()
execute_process(COMMAND ${FUZZER} ${opts} ${dict} -max_total_time=${SECONDS}
  -print_final_stats=1 ${WORK}/corpus RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${FUZZER}: crashed (${rc}); the input is in ${WORK}/artifacts")
endif()
