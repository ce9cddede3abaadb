# The command-line tools over the rollout engine: longtail-generate (sample with the engine, or
# teacher-forced scoring through policy/) and longtail-demo (speculation off vs on vs partial
# rollouts on the bundled checkpoint, one readable summary).
add_executable(longtail-generate ${CMAKE_CURRENT_LIST_DIR}/generate_main.cc)
target_link_libraries(longtail-generate PRIVATE
  longtail_rollout longtail_replay longtail_policy
  Boost::program_options nlohmann_json::nlohmann_json spdlog::spdlog)

if(EXISTS ${CMAKE_CURRENT_LIST_DIR}/demo_main.cc)
  add_executable(longtail-demo ${CMAKE_CURRENT_LIST_DIR}/demo_main.cc)
  target_link_libraries(longtail-demo PRIVATE
    longtail_rollout longtail_policy
    Boost::program_options nlohmann_json::nlohmann_json spdlog::spdlog)
  # Where the bundled checkpoint lives when the demo is not started from the repository root.
  target_compile_definitions(longtail-demo PRIVATE
    LONGTAIL_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
endif()
