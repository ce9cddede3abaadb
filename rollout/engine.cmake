# longtail_rollout: the rollout engine (sequences, scheduler, speculative step, partial rollouts,
# importance statistics, round assembly, trace-forced mode) behind rollout/engine.h. The trajectory
# log format (longtail_trajectory_log) comes from replay.cmake, included before this file.
add_library(longtail_rollout
  ${CMAKE_CURRENT_LIST_DIR}/engine.cc
  ${CMAKE_CURRENT_LIST_DIR}/forced_trajectories.cc
  ${CMAKE_CURRENT_LIST_DIR}/importance.cc
  ${CMAKE_CURRENT_LIST_DIR}/measured_cost_model.cc
  ${CMAKE_CURRENT_LIST_DIR}/partial_pool.cc
  ${CMAKE_CURRENT_LIST_DIR}/request_validator.cc
  ${CMAKE_CURRENT_LIST_DIR}/round_assembler.cc
  ${CMAKE_CURRENT_LIST_DIR}/scheduler.cc
  ${CMAKE_CURRENT_LIST_DIR}/sequence.cc
  ${CMAKE_CURRENT_LIST_DIR}/speculative_step.cc
  ${CMAKE_CURRENT_LIST_DIR}/types.cc)
target_include_directories(longtail_rollout PUBLIC ${PROJECT_SOURCE_DIR} PRIVATE ${CMAKE_CURRENT_BINARY_DIR})
target_link_libraries(longtail_rollout
  PUBLIC longtail_policy longtail_drafter longtail_trajectory_log
  PRIVATE spdlog::spdlog nlohmann_json::nlohmann_json)

# The measured cost models (configs/cost_model_*.yaml), compiled in as text so that an engine finds
# the one for its GPU and checkpoint wherever the binary runs (rollout/measured_cost_model.h).
file(GLOB LONGTAIL_COST_MODEL_FILES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/configs/cost_model_*.yaml)
set(LONGTAIL_COST_MODEL_INC "")
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${LONGTAIL_COST_MODEL_FILES})
foreach(f ${LONGTAIL_COST_MODEL_FILES})
  file(READ ${f} text)
  get_filename_component(name ${f} NAME)
  string(APPEND LONGTAIL_COST_MODEL_INC "{\"configs/${name}\", R\"longtail_yaml(${text})longtail_yaml\"},\n")
endforeach()
file(CONFIGURE OUTPUT ${CMAKE_CURRENT_BINARY_DIR}/measured_cost_models.inc
     CONTENT "${LONGTAIL_COST_MODEL_INC}" @ONLY)
