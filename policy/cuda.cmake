# CUDA backend sources (owned by the CUDA backend engineer), included by policy/CMakeLists.txt when
# LONGTAIL_HAVE_CUDA. cuBLAS does the products; kernels/ does attention, sampling and the rest, so
# the backend is plain C++ with no device code of its own.
target_sources(longtail_policy PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/cuda_backend.cc
  ${CMAKE_CURRENT_LIST_DIR}/cuda_forward.cc
  ${CMAKE_CURRENT_LIST_DIR}/cuda_gemm.cc
  ${CMAKE_CURRENT_LIST_DIR}/cuda_ipc_receive.cc
  ${CMAKE_CURRENT_LIST_DIR}/cuda_graph_cache.cc
  ${CMAKE_CURRENT_LIST_DIR}/cuda_kv_blocks.cc
  ${CMAKE_CURRENT_LIST_DIR}/cuda_step_plan.cc
  ${CMAKE_CURRENT_LIST_DIR}/cuda_weights.cc)
target_link_libraries(longtail_policy
  PUBLIC CUDA::cudart
  PRIVATE CUDA::cublas CUDA::cublasLt longtail_kernels)
set_target_properties(longtail_policy PROPERTIES CUDA_RUNTIME_LIBRARY Shared)
