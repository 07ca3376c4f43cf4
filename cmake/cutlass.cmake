# CUTLASS/CuTe headers: -DKVINFER_CUTLASS_DIR=<dir holding cute/ and cutlass/>, else the pinned
# nvidia-cutlass wheel in the build environment (see third_party/README.md). find_spec locates the
# package without importing it (importing pulls in its Python dependencies, which the build does not need).
if(NOT KVINFER_CUTLASS_DIR)
  execute_process(
    COMMAND ${Python_EXECUTABLE} -c
      "import importlib.util as u, os; s = u.find_spec('cutlass_library'); print(os.path.join(list(s.submodule_search_locations)[0], 'source', 'include') if s else '')"
    OUTPUT_VARIABLE KVINFER_CUTLASS_DIR OUTPUT_STRIP_TRAILING_WHITESPACE)
endif()
if(KVINFER_CUTLASS_DIR AND EXISTS "${KVINFER_CUTLASS_DIR}/cute/tensor.hpp")
  message(STATUS "kvinfer: CUTLASS/CuTe headers from ${KVINFER_CUTLASS_DIR}")
  add_library(kvinfer_cutlass INTERFACE)
  target_include_directories(kvinfer_cutlass SYSTEM INTERFACE ${KVINFER_CUTLASS_DIR})
  set(KVINFER_HAVE_CUTLASS ON)
else()
  message(WARNING "kvinfer: CUTLASS/CuTe headers not found (pip install nvidia-cutlass==4.2.0.0 or set "
                  "-DKVINFER_CUTLASS_DIR); instances that need CuTe cannot be built.")
  set(KVINFER_HAVE_CUTLASS OFF)
endif()
