# The fd->callback adapter (SSLASYNC_FD_CALLBACKS, sslasync_*_fd_callbacks):
# included from CMakeLists.txt after the behaviour tests are defined.
#
#   NAME.fdadapter.{preload,linked}  a callback-mode behaviour test with the
#       accelerator fd-only (TLSD_STYLE=fd) and the adapter on: every
#       callback it expects comes from the shim's "sslasync-fd" thread.
#   NAME.fddiff  the same fd-only runs with the adapter off: native and
#       preloaded transcripts must be identical (the adapter off is native).
#   adapter_*    the adapter's own tests (races, switch, fork, fd reuse, no
#       poller); shim only.
if(NOT HAVE_SHIM)
  return()
endif()

set(_adapter_labels_extra "")
if(SSLASYNC_SANITIZE)
  list(APPEND _adapter_labels_extra sanitize)
endif()

# adapter_variant(TEST KIND MODE ENV...)
function(adapter_variant name kind mode)
  if(mode STREQUAL "linked")
    set(prog $<TARGET_FILE:${name}-linked>)
  else()
    set(prog $<TARGET_FILE:${name}>)
  endif()
  if(kind STREQUAL "fddiff")
    set(tname ${name}.fddiff)
  else()
    set(tname ${name}.${kind}.${mode})
  endif()
  add_test(NAME ${tname} COMMAND ${RUNNER} ${mode} ${prog})
  set_tests_properties(${tname} PROPERTIES
    ENVIRONMENT "${RUN_ENV};${ARGN}"
    LABELS "${mode};adapter;${_adapter_labels_extra}" TIMEOUT 120 SKIP_RETURN_CODE 77)
endfunction()

# Callback-mode behaviour tests whose every callback the adapter must
# deliver when the engine only signals fds. Not here: inline_reentrant and
# eagain (they pick a callback or EAGAIN engine themselves; the adapter
# never arms those), fd_mode (no callback), null_params and job_layout (no
# pause matters), the fork tests (adapter_fork), quic_objects.
set(_fdadapter_tests handshake api_returns ctx_inherit dup clear_reuse set_ssl_ctx
    arg_fire_time foreign_thread status many ctx_threads late_register clear_null
    free_inflight)
# On OpenSSL 1.1.1 neither kind exists: every style is fd-only there and the
# adapter always on, so the plain preload/linked runs are these runs, and
# natively the API is absent (nothing to diff against).
if(NOT OPENSSL_111)
  foreach(_t ${_fdadapter_tests})
    foreach(_m preload linked)
      adapter_variant(${_t} fdadapter ${_m} TLSD_STYLE=fd SSLASYNC_FD_CALLBACKS=1)
    endforeach()
  endforeach()

  # Tests whose expectations follow the mode, so their fd-only runs pass
  # natively: with the adapter off the shim's transcript must equal native's.
  foreach(_t handshake status fd_mode many)
    adapter_variant(${_t} fddiff diff TLSD_STYLE=fd SSLASYNC_FD_CALLBACKS=0)
  endforeach()
endif()

# ------------------------------------------------- the adapter's own tests
# Frees in flight leak OpenSSL's paused job (see lsan-paused-job.supp).
set(_adapter_env "${RUN_ENV}"
    "LSAN_OPTIONS=suppressions=${CMAKE_CURRENT_SOURCE_DIR}/lsan-paused-job.supp")

# adapter_test(NAME [ENV...]): a shim-only program, preloaded and linked.
function(adapter_test name)
  add_executable(${name} ${name}.c)
  target_link_libraries(${name} PRIVATE tlsdrive)
  add_executable(${name}-linked ${name}.c)
  target_link_libraries(${name}-linked PRIVATE -Wl,--no-as-needed sslasync tlsdrive)
  add_dependencies(${name}-linked sslasync_soname)
  foreach(mode preload linked)
    if(mode STREQUAL "linked")
      set(prog $<TARGET_FILE:${name}-linked>)
    else()
      set(prog $<TARGET_FILE:${name}>)
    endif()
    add_test(NAME ${name}.${mode} COMMAND ${RUNNER} ${mode} ${prog})
    set_tests_properties(${name}.${mode} PROPERTIES
      ENVIRONMENT "${_adapter_env};${ARGN}"
      LABELS "${mode};shim-only;adapter;${_adapter_labels_extra}" TIMEOUT 300
      SKIP_RETURN_CODE 77)
  endforeach()
endfunction()

# Readiness racing SSL_free, a clear and the application's own resume;
# engines never armed; SSL_clear reuse; 256 paused at once.
# (Under ASan 12 rounds of 16 per race instead of 40: about 5 s.)
if(SSLASYNC_SANITIZE)
  adapter_test(adapter_races TLSD_STYLE=fd SSLASYNC_FD_CALLBACKS=1 ADAPTER_RACES_ROUNDS=12)
else()
  adapter_test(adapter_races TLSD_STYLE=fd SSLASYNC_FD_CALLBACKS=1)
endif()
# The engine closes its wait fd and the number is reused.
adapter_test(adapter_fdreuse TLSD_STYLE=fd SSLASYNC_FD_CALLBACKS=1)
# SSLASYNC_FD_CALLBACKS values (re-executes itself), the three functions'
# returns and errors, inheritance by SSL_new and SSL_dup; off is native.
adapter_test(adapter_switch TLSD_STYLE=fd)
# fork(): a child's own poller, the parent's armed pause not watched there.
adapter_test(adapter_fork TLSD_STYLE=fd SSLASYNC_FD_CALLBACKS=1)
# The poller thread's own attributes: not those of the thread that started it.
adapter_test(adapter_thread TLSD_STYLE=fd SSLASYNC_FD_CALLBACKS=1)
# The poller cannot start (seccomp: epoll_create1 fails) or no fd can be
# had (RLIMIT_NOFILE): native pause, counted unavailable, the next retries.
adapter_test(adapter_nopoller TLSD_STYLE=fd SSLASYNC_FD_CALLBACKS=1)
