# Trajectory log format, the offline replay library and the engine option table (included by
# rollout/CMakeLists.txt). The first two are kept apart from longtail_rollout so the replay tool and
# the bridge can read logs without the engine.
# longtail_trajectory_log: the two recorded-rollout formats, the binary trajectory log and the
# rollout JSONL (one parser each).
add_library(longtail_trajectory_log ${CMAKE_CURRENT_LIST_DIR}/trajectory_log.cc ${CMAKE_CURRENT_LIST_DIR}/rollout_jsonl.cc)
target_include_directories(longtail_trajectory_log PUBLIC ${CMAKE_CURRENT_LIST_DIR}/..)
target_link_libraries(longtail_trajectory_log PRIVATE nlohmann_json::nlohmann_json)

# longtail_engine_options: the one mapping from dotted keys (flags, YAML) to EngineOptions and
# BackendOptions (engine_options_io.h), for the tools and the worker config.
add_library(longtail_engine_options ${CMAKE_CURRENT_LIST_DIR}/engine_options_io.cc)
target_link_libraries(longtail_engine_options PUBLIC longtail_rollout longtail_policy longtail_drafter)

add_library(longtail_replay
  ${CMAKE_CURRENT_LIST_DIR}/replay_input.cc
  ${CMAKE_CURRENT_LIST_DIR}/replay_simulation.cc
  ${CMAKE_CURRENT_LIST_DIR}/replay_report.cc
  ${CMAKE_CURRENT_LIST_DIR}/replay_fleet.cc)
target_link_libraries(longtail_replay
  PUBLIC longtail_drafter longtail_trajectory_log
  PRIVATE nlohmann_json::nlohmann_json spdlog::spdlog)

# longtail_replay_engine: the replay through the real engine over the accounting backend
# (replay_engine.h), apart from longtail_replay so the drafter benchmarks and the bridge's
# readers do not link the engine.
add_library(longtail_replay_engine ${CMAKE_CURRENT_LIST_DIR}/replay_engine.cc)
target_link_libraries(longtail_replay_engine PUBLIC longtail_replay longtail_rollout longtail_policy)
