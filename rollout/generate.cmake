# longtail-generate: the CLI over policy/ (plain batched decoding or teacher-forced scoring).
add_executable(longtail-generate ${CMAKE_CURRENT_LIST_DIR}/generate_main.cc)
target_link_libraries(longtail-generate PRIVATE
  longtail_policy Boost::program_options nlohmann_json::nlohmann_json spdlog::spdlog)
