# longtail_rollout: the rollout engine (sequences, scheduler, speculative step, partial rollouts,
# importance statistics, round assembly, trace-forced mode) behind rollout/engine.h. The trajectory
# log format (longtail_trajectory_log) comes from replay.cmake, included before this file.
add_library(longtail_rollout
  ${CMAKE_CURRENT_LIST_DIR}/engine.cc
  ${CMAKE_CURRENT_LIST_DIR}/forced_trajectories.cc
  ${CMAKE_CURRENT_LIST_DIR}/importance.cc
  ${CMAKE_CURRENT_LIST_DIR}/partial_pool.cc
  ${CMAKE_CURRENT_LIST_DIR}/request_validator.cc
  ${CMAKE_CURRENT_LIST_DIR}/round_assembler.cc
  ${CMAKE_CURRENT_LIST_DIR}/scheduler.cc
  ${CMAKE_CURRENT_LIST_DIR}/sequence.cc
  ${CMAKE_CURRENT_LIST_DIR}/speculative_step.cc
  ${CMAKE_CURRENT_LIST_DIR}/types.cc)
target_include_directories(longtail_rollout PUBLIC ${PROJECT_SOURCE_DIR})
target_link_libraries(longtail_rollout
  PUBLIC longtail_policy longtail_drafter longtail_trajectory_log
  PRIVATE spdlog::spdlog nlohmann_json::nlohmann_json)
