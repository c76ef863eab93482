# adamx_copy_source_tree(<from> <to>)
#
# Copies an adamx source tree for a test that must act on a tree of its own
# (run the README's commands in it, make a git repository of it): everything
# but version control and build trees (build/, where the presets put theirs,
# and any top-level directory holding a CMakeCache.txt).
function(adamx_copy_source_tree from to)
  file(MAKE_DIRECTORY "${to}")
  file(GLOB _entries LIST_DIRECTORIES true RELATIVE "${from}" "${from}/*" "${from}/.*")
  foreach(_entry IN LISTS _entries)
    if(_entry MATCHES "^(\\.git|build)$" OR EXISTS "${from}/${_entry}/CMakeCache.txt")
      continue()
    endif()
    file(COPY "${from}/${_entry}" DESTINATION "${to}")
  endforeach()
endfunction()
