# Per-source -gencode flags. Every instance names the archs it is built for (the manifest decides);
# "90a" becomes -gencode=arch=compute_90a,code=sm_90a (wgmma/setmaxnreg need the arch-specific target).
function(kvinfer_gencode_flags out archs)
  set(flags "")
  foreach(a IN LISTS archs)
    list(APPEND flags "-gencode=arch=compute_${a},code=sm_${a}")
  endforeach()
  set(${out} "${flags}" PARENT_SCOPE)
endfunction()

# entries: "path|arch1,arch2"
function(kvinfer_add_instances target entries)
  foreach(e IN LISTS entries)
    string(REPLACE "|" ";" parts "${e}")
    list(GET parts 0 src)
    list(GET parts 1 archs)
    string(REPLACE "," ";" archs "${archs}")
    kvinfer_gencode_flags(flags "${archs}")
    set_source_files_properties(${src} PROPERTIES COMPILE_OPTIONS "${flags}")
    target_sources(${target} PRIVATE ${src})
  endforeach()
endfunction()
