# Turns a file into a C array, at build time (CMakeLists.txt runs it whenever
# the file changes):
#   cmake -DIN=openapi.yaml -DOUT=openapi_yaml.c -DNAME=kl_openapi_yaml \
#         -DHEADER=api/openapi_doc.h -P api/embed_file.cmake
# defines `const unsigned char NAME[]` (the bytes plus a NUL) and
# `const size_t NAME_len` (without the NUL), declared in HEADER.
foreach(var IN ITEMS IN OUT NAME HEADER)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "embed_file.cmake: -D${var}=... is missing")
  endif()
endforeach()

file(READ "${IN}" hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
# 16 bytes per line keeps compiler diagnostics and diffs readable.
string(REGEX REPLACE "((0x[0-9a-f][0-9a-f],){16})" "\\1\n    " bytes "${bytes}")
get_filename_component(in_name "${IN}" NAME)

file(WRITE "${OUT}.tmp"
  "/* Generated from ${in_name} by api/embed_file.cmake: do not edit. */\n"
  "#include \"${HEADER}\"\n\n"
  "const unsigned char ${NAME}[] = {\n    ${bytes}0x00};\n"
  "const size_t ${NAME}_len = sizeof ${NAME} - 1;\n")
# Replace only when different, so an unchanged file does not rebuild.
execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different "${OUT}.tmp" "${OUT}")
file(REMOVE "${OUT}.tmp")
