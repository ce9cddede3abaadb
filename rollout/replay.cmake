# Trajectory log format and the offline replay tool (included by rollout/CMakeLists.txt). Kept apart
# from longtail_rollout so the replay tool and the bridge can read logs without the engine.
add_library(longtail_trajectory_log ${CMAKE_CURRENT_LIST_DIR}/trajectory_log.cc)
target_include_directories(longtail_trajectory_log PUBLIC ${CMAKE_CURRENT_LIST_DIR}/..)

add_library(longtail_replay ${CMAKE_CURRENT_LIST_DIR}/replay.cc ${CMAKE_CURRENT_LIST_DIR}/replay_stream.cc
  ${CMAKE_CURRENT_LIST_DIR}/replay_fleet.cc)
target_link_libraries(longtail_replay
  PUBLIC longtail_drafter longtail_trajectory_log
  PRIVATE nlohmann_json::nlohmann_json spdlog::spdlog)

add_executable(longtail-replay ${CMAKE_CURRENT_LIST_DIR}/replay_main.cc)
target_link_libraries(longtail-replay PRIVATE longtail_replay Boost::program_options spdlog::spdlog)
