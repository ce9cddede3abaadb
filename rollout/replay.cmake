# Trajectory log format and the offline replay library (included by rollout/CMakeLists.txt). Kept
# apart from longtail_rollout so the replay tool and the bridge can read logs without the engine.
# longtail_trajectory_log: the two recorded-rollout formats, the binary trajectory log and the
# rollout JSONL (one parser each).
add_library(longtail_trajectory_log ${CMAKE_CURRENT_LIST_DIR}/trajectory_log.cc ${CMAKE_CURRENT_LIST_DIR}/rollout_jsonl.cc)
target_include_directories(longtail_trajectory_log PUBLIC ${CMAKE_CURRENT_LIST_DIR}/..)
target_link_libraries(longtail_trajectory_log PRIVATE nlohmann_json::nlohmann_json)

add_library(longtail_replay
  ${CMAKE_CURRENT_LIST_DIR}/replay_input.cc
  ${CMAKE_CURRENT_LIST_DIR}/replay_simulation.cc
  ${CMAKE_CURRENT_LIST_DIR}/replay_report.cc
  ${CMAKE_CURRENT_LIST_DIR}/replay_fleet.cc)
target_link_libraries(longtail_replay
  PUBLIC longtail_drafter longtail_trajectory_log
  PRIVATE nlohmann_json::nlohmann_json spdlog::spdlog)
