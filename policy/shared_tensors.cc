// Opening a trainer's shared-memory tensor set. The name is checked before anything touches the
// filesystem, and the segment's real size must equal the declared one, so a stale or reused
// segment is refused instead of being read as weights.
#include "policy/shared_tensors.h"

#include <spdlog/spdlog.h>

namespace longtail::policy {

void check_segment_name(std::string_view segment) {
  const auto refuse = [&](const std::string& why) {
    throw LoadError("shared-memory segment '" + std::string(segment) + "': " + why);
  };
  if (!segment.starts_with(kSharedSegmentPrefix))
    refuse("name must start with '" + std::string(kSharedSegmentPrefix) + "'");
  if (segment.size() > 255) refuse("name longer than 255 characters");
  for (char c : segment) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                    c == '_' || c == '.';
    if (!ok) refuse("name may hold only letters, digits, '-', '_' and '.' (no '/')");
  }
  if (segment.find("..") != std::string_view::npos) refuse("name may not contain '..'");
}

Checkpoint open_shared_tensors(const SharedTensorSource& source, const ModelConfig& config) {
  check_segment_name(source.segment);
  const std::filesystem::path path = std::filesystem::path("/dev/shm") / source.segment;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    throw LoadError("shared-memory segment '" + source.segment + "' does not exist (" + path.string() + ")");
  std::shared_ptr<MappedFile> region = map_file(path);
  if (mapped_size(*region) != source.size) {
    throw LoadError(path.string() + ": segment has " + std::to_string(mapped_size(*region)) +
                    " bytes, the request declares " + std::to_string(source.size));
  }
  Checkpoint ck = Checkpoint::from_region(config, std::move(region), source.tensors);
  spdlog::info("{}: {} tensors, {:.1f} MB", path.string(), ck.tensors().size(), ck.weight_bytes() / 1e6);
  return ck;
}

}  // namespace longtail::policy
